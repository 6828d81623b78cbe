package protocol

// NodeInfo is what a node announces of itself, as GET /v1/info lists it.
type NodeInfo struct {
	// ID is the node's id, unique in the cluster.
	ID string `json:"id"`
	// Version is the node's build version.
	Version string `json:"version"`
	// Uptime is how long the node has run, in seconds.
	Uptime float64 `json:"uptime"`
	// Sessions is how many sessions the node holds.
	Sessions int64 `json:"sessions"`
	// Subscriptions is how many subscriptions (exact and wildcard) its
	// sessions hold.
	Subscriptions int64 `json:"subscriptions"`
	// Topics is how many topics have exact subscribers on the node.
	Topics int64 `json:"topics"`
	// PublishedPerSecond is the rate of messages the node published, over
	// its last announcement interval.
	PublishedPerSecond float64 `json:"published_per_second"`
	// DeliveredPerSecond is the rate of deliveries to its sessions over
	// the same interval.
	DeliveredPerSecond float64 `json:"delivered_per_second"`
}
