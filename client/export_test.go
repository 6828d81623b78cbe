package client

// QueuedPublishes returns how many Publish calls of c wait for a request.
func QueuedPublishes(c *Client) int {
	c.pubs.mu.Lock()
	defer c.pubs.mu.Unlock()
	return len(c.pubs.queue)
}

// MaxPublishRequests is how many publish requests a client has in flight.
const MaxPublishRequests = maxPublishRequests
