// Package healthcheck implements Palisade's active and passive server checks.
//
// A [Checker] probes one server once; [New] builds the probe named by a [Spec]
// (tcp, http, https, send_expect, redis_master). A [Scheduler] runs one
// Checker per server with HAProxy's rise/fall semantics, fastinter while a
// server changes state, downinter while it is down and random spread, and
// reports every result as an [Event]. [AgentRunner] runs HAProxy's
// agent-check protocol beside it. [Passive] turns real-traffic failures into
// a forced down. [Metrics] exports check durations and failures.
//
// The package does not read the config file: the daemon maps the parsed
// config onto [Spec]. Constructors start no goroutines; Run methods do and
// return when their context is done.
package healthcheck
