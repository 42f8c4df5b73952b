package proto

import (
	"encoding/binary"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// Messages of the storage service (server/storage): chunk reads, writes,
// truncation and removal on storage targets. DESIGN §7 describes the data
// path: the client computes chunk placement from the file's layout and talks
// to storage directly.
//
// Bulk data never goes through msgpack: a write's data is the request's raw
// payload; a read's data is the response's raw payload.

// Storage RPC methods. The range 200..299 belongs to the storage service.
const (
	// MethodStorageRead reads many chunk ranges in one request. The response
	// payload holds, for each IO in order, exactly Len bytes: the first N of
	// them data, the rest zero (short at the end of a chunk, or an error).
	// Because the layout is known in advance, the client reads the payload
	// straight into its destination buffers.
	MethodStorageRead uint16 = 200
	// MethodStorageWrite writes the request payload into one chunk at Off.
	MethodStorageWrite uint16 = 201
	// MethodStorageTruncate sets a chunk's length (zeros when extended).
	MethodStorageTruncate uint16 = 202
	// MethodStorageRemove removes a chunk (no error when absent).
	MethodStorageRemove uint16 = 203
	// MethodStorageStat returns a chunk's committed version and length.
	MethodStorageStat uint16 = 204
	// MethodStorageRemoveInode removes an inode's chunks with index >= From
	// on one target (garbage collection of deleted and truncated files).
	MethodStorageRemoveInode uint16 = 205
	// MethodStorageLocate is the first half of a local read: for each IO
	// it answers the chunk's committed version and length, the checksums
	// of the blocks the IO covers and the path of the data file holding
	// them, and the client on the same host reads that file itself (O_DIRECT
	// into its own buffers) and verifies the checksums. Served only on the
	// same-host Unix socket (EPERM elsewhere). See docs/wire.md.
	MethodStorageLocate uint16 = 206
	// MethodStorageForward carries a chain update from a target to its
	// successor (CRAQ): a write, truncate or removal the head ordered, or
	// a whole chunk (resync, or a successor that missed updates). Admin
	// only: storage nodes call it with the cluster's admin token. See
	// docs/replication.md.
	MethodStorageForward uint16 = 207
	// MethodStorageDump lists the chunks of one target with their
	// committed versions and checksums, for resync and scrub. Admin only.
	MethodStorageDump uint16 = 208
	// MethodStorageRepair asks the head of a chunk's chain to make every
	// replica of the chunk equal to a good copy: the head's own if its
	// checksums hold, else one fetched from another serving member.
	// Storage nodes call it when a read finds a damaged replica; scrub
	// when replicas differ. Admin only. See docs/replication.md.
	MethodStorageRepair uint16 = 209
	// MethodStorageScrub verifies a page of one target's chunks against
	// their checksums (reading every byte) and, on a chain's head, against
	// the other replicas, repairing what differs. Admin only (fff admin
	// scrub).
	MethodStorageScrub uint16 = 210
)

// ChunkRef names a chunk on a target, with the chain version the caller's
// routing info has: a target refuses a request whose chain version differs
// from its own (ChainVersionMismatch) so stale clients refresh routing.
type ChunkRef struct {
	Ino          uint64 `msgpack:"i"`
	Index        uint32 `msgpack:"x"`
	ChainID      uint32 `msgpack:"c"`
	ChainVersion uint32 `msgpack:"cv"`
	TargetID     uint32 `msgpack:"t"`
}

// ReadIO is one range of a chunk to read.
type ReadIO struct {
	Chunk ChunkRef `msgpack:"k"`
	Off   uint32   `msgpack:"o"`
	Len   uint32   `msgpack:"l"`
}

// StorageReadReq asks for many ranges, possibly of many chunks of one target.
type StorageReadReq struct {
	IOs []ReadIO `msgpack:"ios"`
	// Caps are read capabilities covering every IO's inode (one per file).
	Caps []Capability `msgpack:"caps,omitempty"`
}

// ReadResult is the outcome of one ReadIO.
type ReadResult struct {
	N       uint32 `msgpack:"n"`           // data bytes at the start of this IO's Len-byte slot
	Version uint64 `msgpack:"v,omitempty"` // committed chunk version read
	Code    Code   `msgpack:"c,omitempty"` // OK, or the error (e.g. ChecksumMismatch)
	Msg     string `msgpack:"m,omitempty"`
}

// StorageReadResp answers StorageReadReq, one result per IO.
type StorageReadResp struct {
	Results []ReadResult `msgpack:"r"`
}

// StorageLocateReq asks where the bytes of many chunk ranges are on this
// host's disks (MethodStorageLocate).
type StorageLocateReq struct {
	IOs  []ReadIO     `msgpack:"ios"`
	Caps []Capability `msgpack:"caps,omitempty"` // as StorageReadReq's
}

// ChunkLocation answers one ReadIO of a StorageLocateReq. Bytes [0, Length)
// of the chunk are at the same offsets of the file at Path; bytes of the IO
// at or past Length read as zeros (as StorageRead's), and so does the whole
// IO when Path is empty (the chunk was never written). CRCs holds the
// CRC32C of blocks FirstBlock, FirstBlock+1, ... of BlockSize bytes (the
// last block's covering only the bytes below Length), every block the IO
// touches below Length. A reader that finds the file missing, short, or
// not matching a checksum must read the range through StorageRead instead:
// the chunk changed meanwhile, or the disk is damaged, and the server
// reports which.
type ChunkLocation struct {
	Code       Code      `msgpack:"c,omitempty"`
	Msg        string    `msgpack:"m,omitempty"`
	Version    uint64    `msgpack:"v,omitempty"`
	Length     uint32    `msgpack:"n,omitempty"`
	Path       string    `msgpack:"p,omitempty"`
	BlockSize  uint32    `msgpack:"bs,omitempty"`
	FirstBlock uint32    `msgpack:"fb,omitempty"`
	CRCs       BlockCRCs `msgpack:"crc,omitempty"`
}

// BlockCRCs are CRC32C values, one per block. On the wire they are one
// msgpack bin of 4 little-endian bytes per value: a Locate answer carries a
// value per 4 KiB block read, and encoding them as an array of integers
// cost the node more CPU than finding them.
type BlockCRCs []uint32

// EncodeMsgpack implements msgpack.CustomEncoder.
func (c BlockCRCs) EncodeMsgpack(enc *msgpack.Encoder) error {
	if c == nil {
		return enc.EncodeNil()
	}
	b := make([]byte, 4*len(c))
	for i, v := range c {
		binary.LittleEndian.PutUint32(b[4*i:], v)
	}
	return enc.EncodeBytes(b)
}

// DecodeMsgpack implements msgpack.CustomDecoder.
func (c *BlockCRCs) DecodeMsgpack(dec *msgpack.Decoder) error {
	b, err := dec.DecodeBytes()
	if err != nil {
		return err
	}
	if len(b)%4 != 0 {
		return fmt.Errorf("proto: block checksums of %d bytes, not a multiple of 4", len(b))
	}
	if b == nil {
		*c = nil
		return nil
	}
	out := make(BlockCRCs, len(b)/4)
	for i := range out {
		out[i] = binary.LittleEndian.Uint32(b[4*i:])
	}
	*c = out
	return nil
}

// StorageLocateResp answers StorageLocateReq, one location per IO.
type StorageLocateResp struct {
	Results []ChunkLocation `msgpack:"r"`
}

// StorageWriteReq writes the request payload into Chunk at Off. ChunkSize is
// the file's chunk size: writes past it are refused (EINVAL).
type StorageWriteReq struct {
	Chunk     ChunkRef    `msgpack:"k"`
	Off       uint32      `msgpack:"o"`
	ChunkSize uint32      `msgpack:"cs"`
	Cap       *Capability `msgpack:"cap,omitempty"` // write capability for Chunk.Ino
}

// StorageWriteResp reports the chunk's new committed version.
type StorageWriteResp struct {
	Version uint64 `msgpack:"v"`
}

// StorageTruncateReq sets Chunk's length.
type StorageTruncateReq struct {
	Chunk  ChunkRef    `msgpack:"k"`
	Length uint32      `msgpack:"l"`
	Cap    *Capability `msgpack:"cap,omitempty"` // write capability for Chunk.Ino
}

// StorageTruncateResp reports the chunk's new committed version.
type StorageTruncateResp struct {
	Version uint64 `msgpack:"v"`
}

// StorageRemoveReq removes Chunk.
type StorageRemoveReq struct {
	Chunk ChunkRef    `msgpack:"k"`
	Cap   *Capability `msgpack:"cap,omitempty"` // write capability for Chunk.Ino
}

// StorageStatReq asks for Chunk's state.
type StorageStatReq struct {
	Chunk ChunkRef    `msgpack:"k"`
	Cap   *Capability `msgpack:"cap,omitempty"` // read capability for Chunk.Ino
}

// StorageStatResp describes a chunk; Exists is false for a chunk never
// written (reads of it return zero bytes).
type StorageStatResp struct {
	Exists  bool   `msgpack:"e"`
	Version uint64 `msgpack:"v"`
	Length  uint32 `msgpack:"l"`
}

// StorageRemoveInodeReq removes the chunks of Ino with index >= From on TargetID.
type StorageRemoveInodeReq struct {
	TargetID uint32 `msgpack:"t"`
	Ino      uint64 `msgpack:"i"`
	From     uint32 `msgpack:"f"`
}

// StorageRemoveInodeResp says how many chunks were removed.
type StorageRemoveInodeResp struct {
	Removed uint32 `msgpack:"n"`
}

// ForwardKind says what a StorageForwardReq does.
type ForwardKind uint8

// Forwarded updates.
const (
	// ForwardWrite writes the payload at Off (Base → Version).
	ForwardWrite ForwardKind = 1
	// ForwardTruncate sets the length to Length (Base → Version).
	ForwardTruncate ForwardKind = 2
	// ForwardRemove removes the chunk (no error when absent).
	ForwardRemove ForwardKind = 3
	// ForwardReplace makes the chunk exactly the payload at Version,
	// whatever the successor had.
	ForwardReplace ForwardKind = 4
)

func (k ForwardKind) String() string {
	switch k {
	case ForwardWrite:
		return "write"
	case ForwardTruncate:
		return "truncate"
	case ForwardRemove:
		return "remove"
	case ForwardReplace:
		return "replace"
	}
	return fmt.Sprintf("ForwardKind(%d)", uint8(k))
}

// StorageForwardReq is one chain update sent to the successor target named
// by Chunk (with the chain version the sender routes by). Write and
// truncate apply only on committed version Base and must produce Version;
// otherwise the successor answers ChunkVersionMismatch and changes
// nothing, and the sender replaces the chunk whole.
type StorageForwardReq struct {
	Chunk     ChunkRef    `msgpack:"k"`
	Kind      ForwardKind `msgpack:"kd"`
	Off       uint32      `msgpack:"o,omitempty"`
	Length    uint32      `msgpack:"l,omitempty"`
	ChunkSize uint32      `msgpack:"cs,omitempty"`
	Base      uint64      `msgpack:"b,omitempty"`
	Version   uint64      `msgpack:"v,omitempty"`
}

// StorageForwardResp reports the successor's version after the update.
type StorageForwardResp struct {
	Version uint64 `msgpack:"v"`
}

// StorageDumpReq lists target TargetID's chunks after After (nil: from
// the first), at most Limit (0: the server's page size).
type StorageDumpReq struct {
	TargetID uint32      `msgpack:"t"`
	After    *ChunkState `msgpack:"a,omitempty"`
	Limit    int         `msgpack:"n,omitempty"`
}

// ChunkState is one chunk of a dump: its committed version, length and
// content checksum (equal Length and Checksum: equal bytes).
type ChunkState struct {
	Ino      uint64 `msgpack:"i"`
	Index    uint32 `msgpack:"x"`
	Version  uint64 `msgpack:"v"`
	Length   uint32 `msgpack:"l"`
	Checksum uint32 `msgpack:"c"`
}

// StorageDumpResp is one page of a dump, in chunk order; More says
// whether chunks follow the last one.
type StorageDumpResp struct {
	Chunks []ChunkState `msgpack:"c"`
	More   bool         `msgpack:"m"`
}

// StorageRepairReq names the chunk to repair: Chunk.TargetID is the head of
// its chain, at Chunk.ChainVersion.
type StorageRepairReq struct {
	Chunk ChunkRef `msgpack:"c"`
}

// StorageRepairResp reports the chunk's version after the repair (0: the
// chain holds no such chunk: it was removed from every replica).
type StorageRepairResp struct {
	Version uint64 `msgpack:"v"`
}

// StorageScrubReq verifies target TargetID's chunks after After (nil: from
// the first), at most Limit of them (0: the server's page). With Repair,
// damaged and diverged chunks are repaired through their chain's head.
type StorageScrubReq struct {
	TargetID uint32      `msgpack:"t"`
	After    *ChunkState `msgpack:"a,omitempty"`
	Limit    int         `msgpack:"n,omitempty"`
	Repair   bool        `msgpack:"r,omitempty"`
}

// StorageScrubResp is one page of a scrub. Damaged chunks failed their
// checksums on this target; Diverged ones (found by a chain's head) differ
// between serving replicas in version, length or content. Repaired counts
// those made good again; Errors says why others were not. Last is the last
// chunk verified, the next page's After; More says whether chunks follow.
type StorageScrubResp struct {
	Chunks   int          `msgpack:"k"`
	Bytes    int64        `msgpack:"b"`
	Damaged  []ChunkState `msgpack:"d,omitempty"`
	Diverged []ChunkState `msgpack:"v,omitempty"`
	Repaired int          `msgpack:"p,omitempty"`
	Errors   []string     `msgpack:"e,omitempty"`
	Last     *ChunkState  `msgpack:"l,omitempty"`
	More     bool         `msgpack:"m"`
}
