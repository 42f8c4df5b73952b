package surface_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"fff/internal/proto"
	"fff/internal/rpc"
)

// Who may call each method of a node (issue 14, item 1: "every registered
// method of every service states who may call it"). A method registered
// without an entry here fails TestEveryMethodStatesWhoMayCallIt: add it,
// and to docs/security.md.
const (
	admin   = "admin"   // rpc.AccessAdmin: the server refuses every other identity (EPERM)
	root    = "root"    // meta refuses all but root (uid 0 or admin) with EPERM
	objects = "objects" // meta checks the caller's permissions on the objects named
	chunks  = "chunks"  // storage: a capability from meta for the chunks' inode and access (admin: none needed)
	anyone  = "anyone"  // nothing secret: routing, who am I, file system totals
)

var whoMayCall = map[uint16]string{
	proto.MgmtdGetRouting:      anyone,
	proto.MgmtdHeartbeat:       admin,
	proto.MgmtdRegisterNode:    admin,
	proto.MgmtdRegisterTargets: admin,
	proto.MgmtdCreateChain:     admin,
	proto.MgmtdSetChainTable:   admin,
	proto.MgmtdSetTargetState:  admin,
	proto.MgmtdAddToChainTable: admin,
	proto.MgmtdPlaceChains:     admin,

	proto.MethodMetaLookup:       objects,
	proto.MethodMetaStat:         objects,
	proto.MethodMetaStatPath:     objects,
	proto.MethodMetaReadDir:      objects,
	proto.MethodMetaMkdir:        objects,
	proto.MethodMetaCreate:       objects,
	proto.MethodMetaOpen:         objects,
	proto.MethodMetaClose:        objects,
	proto.MethodMetaReportLength: objects,
	proto.MethodMetaUnlink:       objects,
	proto.MethodMetaRmdir:        objects,
	proto.MethodMetaRename:       objects,
	proto.MethodMetaSymlink:      objects,
	proto.MethodMetaReadlink:     objects,
	proto.MethodMetaLink:         objects,
	proto.MethodMetaSetAttr:      objects,
	proto.MethodMetaSetLayout:    objects,
	proto.MethodMetaStatFS:       anyone,
	proto.MethodMetaRemoveAll:    objects,
	proto.MethodMetaWhoAmI:       anyone,
	proto.MethodMetaCreateTemp:   objects,
	proto.MethodMetaPublish:      objects,
	proto.MethodMetaCapability:   objects,

	proto.MethodMetaUserAdd:       root,
	proto.MethodMetaUserList:      root,
	proto.MethodMetaUserRemove:    root,
	proto.MethodMetaUserToken:     root,
	proto.MethodMetaCredentials:   admin,
	proto.MethodMetaGCList:        root,
	proto.MethodMetaGCDone:        root,
	proto.MethodMetaPruneSessions: root,

	proto.MethodStorageRead:        chunks,
	proto.MethodStorageWrite:       chunks,
	proto.MethodStorageTruncate:    chunks,
	proto.MethodStorageRemove:      chunks,
	proto.MethodStorageStat:        chunks,
	proto.MethodStorageLocate:      chunks,
	proto.MethodStorageRemoveInode: admin,
	proto.MethodStorageForward:     admin,
	proto.MethodStorageDump:        admin,
	proto.MethodStorageRepair:      admin,
	proto.MethodStorageScrub:       admin,
}

// TestEveryMethodStatesWhoMayCallIt walks every method registered on a node
// (as fffd local registers them): each has an entry in whoMayCall, the
// access it was registered with matches it, and every admin-only and
// root-only method refuses an ordinary user with EPERM before doing
// anything (an empty request).
func TestEveryMethodStatesWhoMayCallIt(t *testing.T) {
	n := startNode(t)
	registered := map[uint16]bool{}
	for _, m := range n.methods {
		registered[m] = true
		who, ok := whoMayCall[m]
		if !ok {
			t.Errorf("method %d is registered but does not say who may call it (whoMayCall, docs/security.md)", m)
			continue
		}
		access, _ := n.srv.Access(m)
		if want := map[bool]rpc.Access{true: rpc.AccessAdmin, false: rpc.AccessUser}[who == admin]; access != want {
			t.Errorf("method %d (%s) is registered %v, want %v", m, who, access, want)
		}
		if who != admin && who != root {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := n.user.Call(ctx, m, nil, nil)
		cancel()
		if !errors.Is(err, proto.ErrNotPermitted) {
			t.Errorf("method %d (%s) called by an ordinary user: %v, want EPERM", m, who, err)
		}
	}
	for m, who := range whoMayCall {
		if !registered[m] {
			t.Errorf("whoMayCall lists method %d (%s), which no service registers", m, who)
		}
	}
}
