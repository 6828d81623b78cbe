package broker

// Len returns the number of frames queued in o (a delivery through a
// wildcard pattern is one frame of three parts), for the package's tests.
func (o *Outbox) Len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.count
}
