"""Policy, pure: admission, shedding, circuit breaker, rate limit and hashing."""
