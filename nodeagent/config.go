package nodeagent

// PoolDir is one storage pool the agent serves: its id and its directory.
type PoolDir struct {
	ID  string
	Dir string
}

// Config is the agent's configuration, filled from flags and environment
// by cmd/cloudimages.
type Config struct {
	NodeID               string
	Listen               string
	Token                string
	Pools                []PoolDir
	MaxConcurrent        int
	AllowPrivateNetworks bool
	Version              string
}
