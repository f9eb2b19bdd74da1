/* tiercdn player page: plays data-src and logs, per response, each tier's
   Cache-Status member, the representation and bitrate the player chose, and the
   time to first byte. data-engine says which player: "dash" (dash.js v4 or v5) for
   an MPD, "hls" (hls.js 1.x, or the browser's own HLS without it) for an .m3u8.
   A live manifest plays at the live edge and the page shows the player's live
   latency once a second.

   dash.js: Cache-Status is read in a response interceptor (the headers of the XHR,
   exposed cross-origin by the edge's Access-Control-Expose-Headers). hls.js: in a
   loader that records each response (hls.js's networkDetails: the XHR, or fetch's
   Response) before handing it on. The browser's own HLS shows the page no
   response: no table then.
   Everything the page learns is also in window.tiercdnPlayer, for tests and the
   console. Text from the network only ever reaches the DOM as textContent. */
(function () {
  "use strict";

  var MAX_ROWS = 40;
  var MAX_LIVE_SAMPLES = 3600; // an hour of one-second samples
  var root = document.getElementById("player");
  var video = document.getElementById("video");
  var state = {
    src: root.dataset.src,
    engine: root.dataset.engine, // "dash" | "hls"
    library: root.dataset.library, // the script's URL ("" = the browser's own HLS)
    player: null, // "dash.js" | "hls.js" | "native HLS", once chosen
    version: null,
    attachedAt: null, // performance.now() when the player was given the manifest
    startedAt: null, // performance.now() of the first "playing"
    startupMs: null, // startedAt - attachedAt
    stalls: [], // {at, currentTime, why} after playback started
    errors: [],
    warnings: [], // what the player recovered from by itself (hls.js's non-fatal errors)
    responses: [], // every response the player loaded: manifest, init and media segments
    tierHits: {}, // tier name -> {hit, total} over media segments
    quality: {}, // mediaType -> {id, bandwidth, width, height}
    live: null, // a live manifest: {lowLatency, targetS, latencyS, rate, samples}
    unavailable: 0, // 503s for src before the player was started (a channel starting)
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

  /* A response header from hls.js's networkDetails: an XHR, or fetch's Response. */
  function networkHeader(details, name) {
    try {
      if (details && typeof details.getResponseHeader === "function") {
        return details.getResponseHeader(name);
      }
      if (details && details.headers && typeof details.headers.get === "function") {
        return details.headers.get(name);
      }
    } catch (err) {
      // an aborted XHR or an opaque response: no headers to read
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
     cross-origin only with Timing-Allow-Origin), else the player's own clock
     (startMs and firstByteMs on one time line, or null). */
  function ttfb(url, startMs, firstByteMs) {
    var last = resourceTiming(url);
    if (last && last.responseStart > 0 && last.requestStart > 0) {
      return Math.round((last.responseStart - last.requestStart) * 10) / 10;
    }
    if (!startMs || !firstByteMs) return null;
    return Math.round(Math.max(0, firstByteMs - startMs) * 10) / 10;
  }
  performance.addEventListener("resourcetimingbufferfull", function () {
    performance.clearResourceTimings();
  });

  /* Body size: the player's data, or, for a low-latency segment dash.js streamed
     chunk by chunk (it hands its chunks to the buffer, not to the interceptor), the
     body size Resource Timing saw. */
  function bodyBytes(data, url) {
    if (data && data.byteLength > 0) return data.byteLength;
    var last = resourceTiming(url);
    if (last && last.encodedBodySize > 0) return last.encodedBodySize;
    return data && data.byteLength !== undefined ? data.byteLength : null;
  }

  /* One response, whichever player loaded it: type is "MediaSegment",
     "InitializationSegment", "MPD", "Playlist" ...; mediaType "video", "audio" or "". */
  function record(entry) {
    entry.n = state.responses.length + 1;
    entry.tiers = parseCacheStatus(entry.cacheStatus);
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

  function dashResponse(response) {
    var custom = response.request && response.request.customData;
    var req = (custom && custom.request) || {};
    var rep = req.representation || {};
    var timing = response.resourceTiming || {};
    var url = response.url || (response.request && response.request.url) || req.url;
    record({
      url: url,
      status: response.status,
      type: req.type || "other",
      mediaType: req.mediaType || "",
      index: req.index,
      rep: rep.id !== undefined ? String(rep.id) : "",
      bandwidth: rep.bandwidth || req.bandwidth || null,
      width: rep.width || null,
      height: rep.height || null,
      cacheStatus: header(response.headers, "cache-status") || "",
      ttfbMs: ttfb(
        url,
        req.startDate && req.startDate.getTime(),
        req.firstByteDate && req.firstByteDate.getTime()
      ),
      totalMs: timing.duration !== undefined ? Math.round(timing.duration) : null,
      bytes: bodyBytes(response.data, url),
    });
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

  function seconds(value) {
    return isFinite(value) && value !== null ? value.toFixed(1) + " s" : "–";
  }

  function showQuality() {
    var v = state.quality.video;
    if (v) {
      $("quality").textContent =
        (v.height ? v.width + "x" + v.height + " " : "") +
        (v.bandwidth ? Math.round(v.bandwidth / 1000) + " kb/s" : "rep " + v.id);
    }
  }

  /* Live, whichever player: `live` answers isLive(), lowLatency(), targetS(),
     latencyS() and bufferS() for the player in use; sampled once a second. */
  var live = null;

  function sampleLive() {
    if (live === null || !live.isLive()) return;
    var l = state.live;
    if (l === null) {
      l = state.live = { lowLatency: false, targetS: null, latencyS: null, rate: 1, samples: [] };
      $("live").hidden = false;
    }
    l.lowLatency = live.lowLatency();
    l.targetS = live.targetS();
    l.latencyS = live.latencyS();
    l.rate = video.playbackRate;
    if (state.startedAt !== null && isFinite(l.latencyS) && l.latencyS !== null) {
      l.samples.push({
        at: performance.now(),
        latencyS: l.latencyS,
        rate: l.rate,
        bufferS: live.bufferS(),
      });
      if (l.samples.length > MAX_LIVE_SAMPLES) l.samples.shift();
    }
    $("latency").textContent = seconds(l.latencyS);
    $("target").textContent = seconds(l.targetS) + (l.lowLatency ? " low latency" : "");
    $("rate").textContent = l.rate.toFixed(2) + "×";
  }

  /* dash.js 5 plays a dynamic MPD at its live edge by itself; in low-latency mode
     (which it enters when the MPD's SegmentTemplate says
     availabilityTimeComplete="false") it loads segments chunk by chunk as they grow,
     aims at the MPD's ServiceDescription latency target and turns catch-up on (a
     playback rate around 1 steers the latency to the target). The page leaves all
     that to the MPD: only ?latency= (data-latency) overrides the target. The latency
     is now (synchronised with the MPD's UTCTiming) minus the playhead's wall-clock
     time. */
  function startDash(latency) {
    if (!window.dashjs || !window.dashjs.MediaPlayer) {
      fail("dash.js did not load from " + state.library + " (check --player-dashjs-url)");
      return;
    }
    var dashjs = window.dashjs;
    var events = dashjs.MediaPlayer.events;
    var player = dashjs.MediaPlayer().create();
    state.player = "dash.js";
    state.version = player.getVersion ? player.getVersion() : null;
    window.tiercdnDash = player;

    if (player.addResponseInterceptor) {
      player.addResponseInterceptor(function (response) {
        try {
          dashResponse(response);
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
      showQuality();
    });

    function isDynamic() {
      try {
        return player.isDynamic();
      } catch (err) {
        return false; // playback not initialised yet
      }
    }
    live = {
      isLive: isDynamic,
      lowLatency: function () {
        return Boolean(player.getLowLatencyModeEnabled && player.getLowLatencyModeEnabled());
      },
      targetS: function () {
        return player.getTargetLiveDelay ? player.getTargetLiveDelay() : null;
      },
      latencyS: function () {
        return player.getCurrentLiveLatency();
      },
      bufferS: function () {
        return player.getBufferLength("video");
      },
    };
    if (latency > 0) {
      player.updateSettings({ streaming: { delay: { liveDelay: latency } } });
    }
    player.updateSettings({ debug: { logLevel: dashjs.Debug.LOG_LEVEL_WARNING } });
    state.attachedAt = performance.now();
    $("state").textContent = "loading " + state.src;
    player.initialize(video, state.src, true);
  }

  /* The media playlist's name stands for the rendition: ".../media_1.m3u8" -> "media_1". */
  function playlistName(url) {
    var name = String(url || "").split("?")[0].split("/").pop();
    return name.replace(/\.m3u8$/i, "");
  }

  /* hls.js 1.x. Every request hls.js makes (multivariant and media playlists, init
     and media segments) goes through its loader, so the page plays with a loader
     that records each response (its XHR, or fetch's Response, hls.js calls
     networkDetails) before handing it on: the equivalent of dash.js's response
     interceptor. The loader's context says what was loaded (a playlist's type, a
     fragment's rendition and number). A live playlist plays at its live edge,
     low-latency when it has parts; ?latency= sets liveSyncDuration. */
  function startHls(latency) {
    var Hls = window.Hls;
    if (!Hls || !Hls.isSupported || !Hls.isSupported()) {
      var why = !Hls
        ? state.library
          ? "hls.js did not load from " + state.library + " (check --player-hlsjs-url)"
          : "no hls.js (--player-hlsjs-url is empty)"
        : "hls.js cannot play here (no MediaSource)";
      if (video.canPlayType("application/vnd.apple.mpegurl")) {
        startNative(why);
      } else {
        fail(why + " and this browser has no HLS of its own");
      }
      return;
    }
    var hls = null; // set below; the loader only runs once it is

    function rendition(frag) {
      if (frag.type === "main") {
        var level = hls.levels[frag.level] || {};
        return {
          mediaType: "video",
          rep: playlistName(level.uri || (level.url && level.url[0])) || String(frag.level),
          bandwidth: level.bitrate || null,
          width: level.width || null,
          height: level.height || null,
        };
      }
      var track = (hls.audioTracks || [])[frag.level] || {};
      return {
        mediaType: frag.type === "audio" ? "audio" : frag.type,
        rep: playlistName(track.url) || String(frag.level),
        bandwidth: track.bitrate || null,
        width: null,
        height: null,
      };
    }

    var PLAYLISTS = { manifest: "", level: "video", audioTrack: "audio", subtitleTrack: "text" };

    /* One finished load: context is hls.js's loader context, details its
       networkDetails, status the HTTP status of a failed load (else details'). */
    function loaded(context, details, stats, data, status) {
      var loading = (stats && stats.loading) || {};
      var frag = context.frag;
      var r = {
        url: context.url,
        status: status || (details && details.status) || null,
        type: "other",
        mediaType: "",
        index: null,
        rep: "",
        bandwidth: null,
        width: null,
        height: null,
        cacheStatus: networkHeader(details, "cache-status") || "",
        ttfbMs: ttfb(context.url, loading.start, loading.first),
        totalMs: loading.end && loading.start ? Math.round(loading.end - loading.start) : null,
        bytes: bodyBytes(data, context.url),
      };
      if (!r.bytes && stats && stats.total > 0) r.bytes = stats.total;
      if (frag) {
        var rend = rendition(frag);
        for (var key in rend) r[key] = rend[key];
        r.type = frag.sn === "initSegment" ? "InitializationSegment" : "MediaSegment";
        r.index = frag.sn === "initSegment" ? null : frag.sn;
      } else if (context.type in PLAYLISTS) {
        r.type = "Playlist";
        r.mediaType = PLAYLISTS[context.type];
        r.rep = playlistName(context.url);
      }
      record(r);
    }

    function safely(fn) {
      return function () {
        try {
          fn.apply(null, arguments);
        } catch (err) {
          console.warn("tiercdn player: could not record a response", err);
        }
      };
    }
    var recordLoad = safely(loaded);

    var Loader = Hls.DefaultConfig.loader;
    class RecordingLoader extends Loader {
      load(context, config, callbacks) {
        var wrapped = Object.assign({}, callbacks, {
          onSuccess: function (response, stats, ctx, details) {
            recordLoad(ctx, details, stats, response && response.data, null);
            return callbacks.onSuccess(response, stats, ctx, details);
          },
          onError: function (error, ctx, details, stats) {
            recordLoad(ctx, details, stats, null, error && error.code);
            return callbacks.onError(error, ctx, details, stats);
          },
        });
        return super.load(context, config, wrapped);
      }
    }

    var config = { enableWorker: true, lowLatencyMode: true, loader: RecordingLoader };
    if (latency > 0) config.liveSyncDuration = latency;
    hls = new Hls(config);
    var events = Hls.Events;
    state.player = "hls.js";
    state.version = Hls.version || null;
    window.tiercdnHls = hls;

    hls.on(events.MANIFEST_PARSED, function () {
      var played = video.play();
      if (played && played.catch) {
        played.catch(function (err) {
          console.warn("tiercdn player: autoplay refused", err);
        });
      }
    });
    hls.on(events.LEVEL_SWITCHED, function (event, d) {
      var level = hls.levels[d.level] || {};
      state.quality.video = {
        id: playlistName(level.uri || (level.url && level.url[0])) || String(d.level),
        bandwidth: level.bitrate,
        width: level.width,
        height: level.height,
      };
      showQuality();
    });
    hls.on(events.AUDIO_TRACK_SWITCHED, function (event, d) {
      state.quality.audio = { id: d.name || String(d.id), bandwidth: d.bitrate || null };
    });
    hls.on(events.ERROR, function (event, d) {
      if (d.details === Hls.ErrorDetails.BUFFER_STALLED_ERROR) {
        stall("hls.js buffer stalled");
      }
      if (d.fatal) {
        var message = d.error && d.error.message ? d.error.message : d.details;
        fail("hls.js " + d.type + " error " + d.details + ": " + message);
      } else {
        state.warnings.push(d.details);
      }
    });

    function playlistDetails() {
      var level = hls.levels && hls.levels[hls.currentLevel >= 0 ? hls.currentLevel : 0];
      return (level && level.details) || null;
    }
    live = {
      isLive: function () {
        var details = playlistDetails();
        return Boolean(details && details.live);
      },
      lowLatency: function () {
        var details = playlistDetails();
        return Boolean(hls.lowLatencyMode && details && details.partList);
      },
      targetS: function () {
        return hls.targetLatency;
      },
      latencyS: function () {
        return hls.latency;
      },
      bufferS: function () {
        var b = video.buffered;
        for (var i = 0; i < b.length; i++) {
          if (b.start(i) <= video.currentTime && video.currentTime <= b.end(i)) {
            return b.end(i) - video.currentTime;
          }
        }
        return 0;
      },
    };
    state.attachedAt = performance.now();
    $("state").textContent = "loading " + state.src;
    hls.loadSource(state.src);
    hls.attachMedia(video);
  }

  /* The browser's own HLS (Safari): it plays, but shows the page no response. */
  function startNative(why) {
    state.player = "native HLS";
    state.warnings.push(why + ": playing with the browser's own HLS, no per-segment table");
    $("error").hidden = false;
    $("error").textContent = state.warnings[state.warnings.length - 1];
    state.attachedAt = performance.now();
    $("state").textContent = "loading " + state.src;
    video.src = state.src;
    video.play().catch(function (err) {
      console.warn("tiercdn player: autoplay refused", err);
    });
  }

  setInterval(sampleLive, 1000);

  video.muted = true;
  video.addEventListener("playing", function () {
    $("state").textContent = live && live.isLive() ? "playing live" : "playing";
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

  /* A live channel's manifest answers 503 + Retry-After while its encoder starts (and
     restarts). Players give up on a manifest after a retry or three, so the page asks
     for src itself first and waits as told (1-10 s a time, SRC_WAIT_MS in all); any
     other answer, or a network error, starts the player, which reports what is wrong.
     A browser cache never keeps the 503 (no-store). startupMs counts from the player's
     start, after the wait. */
  var SRC_WAIT_MS = 30000;
  function whenAvailable(then) {
    var deadline = performance.now() + SRC_WAIT_MS;
    function attempt() {
      fetch(state.src, { credentials: "omit" }).then(
        function (response) {
          if (response.status !== 503) return then();
          state.unavailable += 1;
          var after = parseFloat(response.headers.get("Retry-After"));
          var waitS = Math.min(10, Math.max(1, isFinite(after) ? after : 1));
          if (performance.now() + waitS * 1000 > deadline) return then();
          $("state").textContent = "unavailable (503): asking again in " + waitS + " s";
          setTimeout(attempt, waitS * 1000);
        },
        function () {
          then();
        }
      );
    }
    attempt();
  }

  var latency = parseFloat(root.dataset.latency);
  whenAvailable(function () {
    if (state.engine === "hls") {
      startHls(latency);
    } else {
      startDash(latency);
    }
  });
})();
