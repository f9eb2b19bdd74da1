/* tiercdn player page: plays data-src with dash.js (v4 or v5) and logs, per
   response, each tier's Cache-Status member, the representation and bitrate
   dash.js chose, and the time to first byte. A live (dynamic) MPD plays at the
   live edge and the page shows dash.js's live latency once a second.

   Cache-Status is read in a dash.js response interceptor (the headers of the
   XHR, exposed cross-origin by the edge's Access-Control-Expose-Headers).
   Everything the page learns is also in window.tiercdnPlayer, for tests and
   the console. Text from the network only ever reaches the DOM as textContent. */
(function () {
  "use strict";

  var MAX_ROWS = 40;
  var MAX_LIVE_SAMPLES = 3600; // an hour of one-second samples
  var root = document.getElementById("player");
  var video = document.getElementById("video");
  var state = {
    src: root.dataset.src,
    dashjs: root.dataset.dashjs,
    version: null,
    attachedAt: null, // performance.now() when dash.js was given the manifest
    startedAt: null, // performance.now() of the first "playing"
    startupMs: null, // startedAt - attachedAt
    stalls: [], // {at, currentTime, why} after playback started
    errors: [],
    responses: [], // every response dash.js loaded: manifest, init and media segments
    tierHits: {}, // tier name -> {hit, total} over media segments
    quality: {}, // mediaType -> {id, bandwidth, width, height}
    live: null, // a dynamic MPD: {lowLatency, targetS, latencyS, rate, samples}
  };
  window.tiercdnPlayer = state;

  function $(id) {
    return document.getElementById(id);
  }

  function fail(message) {
    state.errors.push(String(message));
    var el = $("error");
    el.hidden = false;
    el.textContent = state.errors.join("\n");
    $("state").textContent = "error";
  }

  function header(headers, name) {
    if (!headers) return null;
    for (var key in headers) {
      if (key.toLowerCase() === name) return headers[key];
    }
    return null;
  }

  /* RFC 9211: "regional-1; fwd=uri-miss; stored, edge-1; hit; ttl=29" -> members,
     the cache nearest the origin first. */
  function parseCacheStatus(value) {
    if (!value) return [];
    return value
      .split(",")
      .map(function (m) {
        return m.trim();
      })
      .filter(Boolean)
      .map(function (member) {
        var params = member.split(";").map(function (p) {
          return p.trim();
        });
        var name = params.shift();
        var fwd = params.find(function (p) {
          return p.indexOf("fwd=") === 0;
        });
        var kind = "other";
        var outcome = params[0] || "?";
        if (params.indexOf("hit") >= 0) {
          kind = outcome = "hit";
        } else if (params.indexOf("collapsed") >= 0) {
          kind = outcome = "collapsed";
        } else if (fwd) {
          kind = "miss";
          outcome = fwd.slice(4);
        }
        return { tier: name, outcome: outcome, kind: kind, raw: member };
      });
  }

  function resourceTiming(url) {
    var entries = url ? performance.getEntriesByName(url, "resource") : [];
    return entries[entries.length - 1] || null;
  }

  /* Time to first byte: Resource Timing when the browser has it (sub-millisecond;
     cross-origin only with Timing-Allow-Origin), else dash.js's own Dates. */
  function ttfb(url, req) {
    var last = resourceTiming(url);
    if (last && last.responseStart > 0 && last.requestStart > 0) {
      return Math.round((last.responseStart - last.requestStart) * 10) / 10;
    }
    if (!req.startDate || !req.firstByteDate) return null;
    return Math.max(0, req.firstByteDate.getTime() - req.startDate.getTime());
  }
  performance.addEventListener("resourcetimingbufferfull", function () {
    performance.clearResourceTimings();
  });

  /* Body size: dash.js's data, or, for a low-latency segment dash.js streamed chunk
     by chunk (it hands its chunks to the buffer, not to the interceptor), the body
     size Resource Timing saw. */
  function bodyBytes(response, url) {
    var data = response.data;
    if (data && data.byteLength > 0) return data.byteLength;
    var last = resourceTiming(url);
    if (last && last.encodedBodySize > 0) return last.encodedBodySize;
    return data && data.byteLength !== undefined ? data.byteLength : null;
  }

  function record(response) {
    var custom = response.request && response.request.customData;
    var req = (custom && custom.request) || {};
    var rep = req.representation || {};
    var timing = response.resourceTiming || {};
    var entry = {
      n: state.responses.length + 1,
      url: response.url || (response.request && response.request.url) || req.url,
      status: response.status,
      type: req.type || "other",
      mediaType: req.mediaType || "",
      index: req.index,
      rep: rep.id !== undefined ? String(rep.id) : "",
      bandwidth: rep.bandwidth || req.bandwidth || null,
      width: rep.width || null,
      height: rep.height || null,
      cacheStatus: header(response.headers, "cache-status") || "",
      tiers: [],
      ttfbMs: null,
      totalMs: timing.duration !== undefined ? Math.round(timing.duration) : null,
      bytes: null,
    };
    entry.bytes = bodyBytes(response, entry.url);
    entry.tiers = parseCacheStatus(entry.cacheStatus);
    entry.ttfbMs = ttfb(entry.url, req);
    state.responses.push(entry);
    if (entry.type === "MediaSegment") {
      entry.tiers.forEach(function (t) {
        var c = (state.tierHits[t.tier] = state.tierHits[t.tier] || { hit: 0, total: 0 });
        c.total += 1;
        if (t.kind === "hit") c.hit += 1;
      });
    }
    render(entry);
  }

  function cell(row, text, cls) {
    var td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "–" : String(text);
    if (cls) td.className = cls;
    row.appendChild(td);
    return td;
  }

  function render(e) {
    var row = document.createElement("tr");
    row.className = e.status >= 400 ? "failed" : "";
    cell(row, e.n);
    cell(row, (e.mediaType ? e.mediaType + " " : "") + (e.type === "MediaSegment" ? "" : e.type));
    var name = cell(row, (e.url || "").split("?")[0].split("/").pop());
    name.title = e.url || "";
    cell(row, e.rep);
    cell(row, e.bandwidth ? Math.round(e.bandwidth / 1000) + " kb/s" : null);
    var statuses = cell(row, "");
    if (!e.tiers.length) statuses.textContent = e.status >= 400 ? "HTTP " + e.status : "–";
    e.tiers.forEach(function (t) {
      var badge = document.createElement("span");
      badge.className = "tier " + t.kind;
      badge.textContent = t.tier + " " + t.outcome;
      badge.title = t.raw;
      statuses.appendChild(badge);
    });
    cell(row, e.ttfbMs !== null ? e.ttfbMs + " ms" : null, "num");
    cell(row, e.totalMs !== null ? e.totalMs + " ms" : null, "num");
    cell(row, e.bytes !== null ? (e.bytes / 1024).toFixed(1) + " KiB" : null, "num");
    var body = $("segments").tBodies[0];
    body.insertBefore(row, body.firstChild);
    while (body.rows.length > MAX_ROWS) body.deleteRow(body.rows.length - 1);
    $("count").textContent = String(
      state.responses.filter(function (r) {
        return r.type === "MediaSegment";
      }).length
    );
    $("hits").textContent =
      Object.keys(state.tierHits)
        .map(function (tier) {
          var c = state.tierHits[tier];
          return tier + " " + c.hit + "/" + c.total;
        })
        .join(" · ") || "–";
  }

  function stall(why) {
    if (state.startedAt === null || video.ended || video.seeking) return;
    state.stalls.push({ at: performance.now(), currentTime: video.currentTime, why: why });
    $("stalls").textContent = String(state.stalls.length);
  }

  if (!window.dashjs || !window.dashjs.MediaPlayer) {
    fail("dash.js did not load from " + state.dashjs + " (check --player-dashjs-url)");
    return;
  }
  var dashjs = window.dashjs;
  var events = dashjs.MediaPlayer.events;
  var player = dashjs.MediaPlayer().create();
  state.version = player.getVersion ? player.getVersion() : null;
  window.tiercdnDash = player;

  if (player.addResponseInterceptor) {
    player.addResponseInterceptor(function (response) {
      try {
        record(response);
      } catch (err) {
        console.warn("tiercdn player: could not record a response", err);
      }
      return Promise.resolve(response);
    });
  } else {
    fail("this dash.js (" + state.version + ") has no addResponseInterceptor: use dash.js 5");
  }

  player.on(events.ERROR, function (e) {
    var err = e.error || {};
    fail("dash.js error " + (err.code || "") + ": " + (err.message || JSON.stringify(err)));
  });
  player.on(events.PLAYBACK_ERROR, function (e) {
    fail("playback error: " + (e.error && e.error.message ? e.error.message : "media error"));
  });
  player.on(events.BUFFER_EMPTY, function (e) {
    stall("dash.js buffer empty (" + (e.mediaType || "?") + ")");
  });
  player.on(events.QUALITY_CHANGE_RENDERED, function (e) {
    var rep = e.newRepresentation || {};
    state.quality[e.mediaType] = {
      id: rep.id,
      bandwidth: rep.bandwidth,
      width: rep.width,
      height: rep.height,
    };
    var v = state.quality.video;
    if (v) {
      $("quality").textContent =
        (v.height ? v.width + "x" + v.height + " " : "") +
        (v.bandwidth ? Math.round(v.bandwidth / 1000) + " kb/s" : "rep " + v.id);
    }
  });

  /* Live. dash.js 5 plays a dynamic MPD at its live edge by itself; in low-latency
     mode (which it enters when the MPD's SegmentTemplate says
     availabilityTimeComplete="false") it loads segments chunk by chunk as they grow,
     aims at the MPD's ServiceDescription latency target and turns catch-up on (a
     playback rate around 1 steers the latency to the target). The page leaves all
     that to the MPD: only ?latency= (data-latency) overrides the target. The latency
     is now (synchronised with the MPD's UTCTiming) minus the playhead's wall-clock
     time. */
  function isDynamic() {
    try {
      return player.isDynamic();
    } catch (err) {
      return false; // playback not initialised yet
    }
  }

  function seconds(value) {
    return isFinite(value) ? value.toFixed(1) + " s" : "–";
  }

  function sampleLive() {
    if (!isDynamic()) return;
    var live = state.live;
    if (live === null) {
      live = state.live = { lowLatency: false, targetS: null, latencyS: null, rate: 1, samples: [] };
      $("live").hidden = false;
    }
    live.lowLatency = Boolean(player.getLowLatencyModeEnabled && player.getLowLatencyModeEnabled());
    live.targetS = player.getTargetLiveDelay ? player.getTargetLiveDelay() : null;
    live.latencyS = player.getCurrentLiveLatency();
    live.rate = video.playbackRate;
    if (state.startedAt !== null && isFinite(live.latencyS)) {
      live.samples.push({
        at: performance.now(),
        latencyS: live.latencyS,
        rate: live.rate,
        bufferS: player.getBufferLength("video"),
      });
      if (live.samples.length > MAX_LIVE_SAMPLES) live.samples.shift();
    }
    $("latency").textContent = seconds(live.latencyS);
    $("target").textContent = seconds(live.targetS) + (live.lowLatency ? " low latency" : "");
    $("rate").textContent = live.rate.toFixed(2) + "×";
  }
  setInterval(sampleLive, 1000);

  var latency = parseFloat(root.dataset.latency);
  if (latency > 0) {
    player.updateSettings({ streaming: { delay: { liveDelay: latency } } });
  }

  video.muted = true;
  video.addEventListener("playing", function () {
    $("state").textContent = isDynamic() ? "playing live" : "playing";
    if (state.startedAt !== null) return;
    state.startedAt = performance.now();
    state.startupMs = Math.round(state.startedAt - state.attachedAt);
    $("startup").textContent = state.startupMs + " ms";
  });
  video.addEventListener("waiting", function () {
    $("state").textContent = "waiting";
    stall("video waiting");
  });
  video.addEventListener("ended", function () {
    $("state").textContent = "ended";
  });
  video.addEventListener("error", function () {
    var err = video.error;
    fail("video element error " + (err ? err.code + " " + err.message : ""));
  });

  player.updateSettings({ debug: { logLevel: dashjs.Debug.LOG_LEVEL_WARNING } });
  state.attachedAt = performance.now();
  $("state").textContent = "loading " + state.src;
  player.initialize(video, state.src, true);
})();
