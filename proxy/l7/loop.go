package l7

// Loop is an event loop of package proxy's engine as the HTTP connections it
// serves see it (ServeEngine). Every method but Post is called on the loop's
// own goroutine, and every callback (Watcher, Timed) runs there too: a
// connection's state needs no lock.
type Loop interface {
	// Watch adds the non-blocking socket fd to the loop's epoll set,
	// edge-triggered for input, output and peer shutdown; its readiness
	// changes go to w.Ready until Unwatch or close.
	Watch(fd int, w Watcher) error
	// Unwatch takes fd out of the set (before it is closed or handed to
	// Go's poller).
	Unwatch(fd int)
	// Now is the loop's clock in nanoseconds, read once per iteration.
	Now() int64
	// Track puts t in the loop's timeout sweep (accurate to 10 ms) until
	// the returned Timer is stopped.
	Track(t Timed) Timer
	// Post runs fn on the loop's goroutine soon; it reports false once the
	// loop has ended (its tracked items were shut down by then).
	Post(fn func()) bool
	// Moved counts n bytes passed between a client and a server, for the
	// loop's own measure of its rate.
	Moved(n int)
}

// Watcher receives a socket's epoll events.
type Watcher interface{ Ready(events uint32) }

// Timed is something with a deadline on a Loop.
type Timed interface {
	// Deadline is asked when the last deadline set has passed: activity
	// since may have moved it later.
	Deadline() int64
	// Expire runs when Deadline has passed too.
	Expire()
	// Shutdown runs when the loop ends: close everything now.
	Shutdown()
}

// Timer is a Timed's place in the sweep.
type Timer interface {
	// Set moves the deadline (Loop.Now clock); an earlier one must be Set,
	// a later one may be left for Deadline to report.
	Set(at int64)
	Stop()
}
