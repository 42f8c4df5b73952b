package proto

// Capabilities (docs/security.md#capabilities): meta hands a client one
// for each file it opens, after its permission checks; storage accepts a
// chunk request from a non-admin caller only with a capability for the
// chunk's inode and the access asked, checked on the node itself (an HMAC
// under the cluster's capability key) without a call to meta. Like an HDFS
// block access token or a Ceph capability, it is the proof that the
// permission check happened.

// Access bits of a Capability.
const (
	CapRead  uint8 = 1 << 0 // read, locate and stat the file's chunks
	CapWrite uint8 = 1 << 1 // write, truncate and remove them
)

// Capability grants UID the access Mode to the chunks of inode Ino until
// Expiry (ns since the Unix epoch, meta's clock). MAC is the truncated
// HMAC-SHA256 of the other fields under the cluster's capability key
// (package capability). Only its issuer's cluster can make one: a client
// holds it and hands it back unchanged.
type Capability struct {
	Ino    uint64 `msgpack:"i"`
	Mode   uint8  `msgpack:"m"`
	UID    uint32 `msgpack:"u"`
	Expiry int64  `msgpack:"e"`
	MAC    []byte `msgpack:"s"`
}

// MethodMetaCapability renews a capability (MetaCapabilityReq →
// MetaCapabilityResp): meta checks the caller's access again, or, for a
// write session the caller holds, takes the session as the proof.
const MethodMetaCapability uint16 = 122

// MetaCapabilityReq asks for a capability for Ino with the access of
// Flags (OpenRead, OpenWrite). With a Session of the caller's, the
// session's file is granted read and write without a permission check, as
// an open descriptor keeps working after a chmod.
type MetaCapabilityReq struct {
	Ino     uint64    `msgpack:"ino"`
	Flags   OpenFlags `msgpack:"flags"`
	Session Session   `msgpack:"session,omitempty"`
}

// MetaCapabilityResp carries the new capability and its lifetime in ns
// (the client renews by its own clock, before TTL has passed).
type MetaCapabilityResp struct {
	Cap Capability `msgpack:"cap"`
	TTL int64      `msgpack:"ttl"`
}
