package main

import (
	"fmt"
	"path/filepath"

	"fff/internal/capability"
)

// loadCapabilityKey reads the cluster's capability key from
// DATA/capability.key (docs/security.md#capabilities) into n.caps. The
// roles that create a cluster (local, mgmtd) make the key on first start;
// meta and storage nodes need a copy of it, as of admin.token, and refuse
// to start without one: meta would hand out capabilities that storage
// cannot check, or storage would refuse every client.
func (n *node) loadCapabilityKey(create bool) error {
	path := filepath.Join(n.cfg.Node.DataDir, capability.KeyFile)
	if create {
		made, err := capability.Create(path)
		if err != nil {
			return err
		}
		if made {
			n.log.Info().Str("file", path).Msg("made the cluster's capability key")
		}
	}
	k, err := capability.Load(path)
	if err != nil {
		if !create {
			return fmt.Errorf("%w (meta and storage nodes need a copy of the key that mgmtd's node made in its data directory, mode 0600, as of admin.token)", err)
		}
		return err
	}
	n.caps = k
	return nil
}
