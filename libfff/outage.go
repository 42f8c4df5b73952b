package libfff

import (
	"context"
	"errors"
	"time"

	"fff/internal/proto"
	"fff/internal/rpc"
)

// Riding through an outage. A chain being reconfigured (failingOver) is
// waited for like an unreachable cluster. A cluster that cannot be reached at all
// (proto.Unavailable: connection refused or lost, as while `fff down; fff
// up` restarts a local cluster, or while a node reboots) is waited for, up
// to Options.RetryTimeout from the first failure of the call, with backoff;
// then the call fails with the last error. What may be repeated is decided
// per call: any call that surely never reached a server (rpc.ErrNotSent),
// and calls whose repetition does what one call does (idempotent below)
// even when the connection died with the request on the wire. A create,
// rename or unlink whose answer was lost is not repeated: it may have
// happened, and a second try would report a false error.

// DefaultRetryTimeout is Options.RetryTimeout's default: long enough for
// a local cluster's restart, short enough that a dead cluster is reported
// within a minute.
const DefaultRetryTimeout = 60 * time.Second

// idempotent reports whether repeating method has the effect of one call.
// A chunk write puts the same bytes at the same place again; a length
// report keeps the maximum.
func idempotent(method uint16) bool {
	switch method {
	case proto.MethodMetaLookup, proto.MethodMetaStat, proto.MethodMetaStatPath,
		proto.MethodMetaReadDir, proto.MethodMetaReadlink, proto.MethodMetaStatFS,
		proto.MethodMetaWhoAmI, proto.MethodMetaReportLength,
		proto.MgmtdGetRouting,
		proto.MethodStorageRead, proto.MethodStorageWrite, proto.MethodStorageStat,
		proto.MethodStorageLocate:
		return true
	}
	return false
}

// failingOver reports whether a storage node's refusal says that the chain
// is being reconfigured: the target stopped serving (or its node is fenced,
// having lost mgmtd), it is no longer the head, or the chain's version
// moved. mgmtd's new routing ends it within a heartbeat timeout; the node
// refused the request, so repeating it is safe for any method.
func failingOver(code proto.Code) bool {
	switch code {
	case proto.TargetNotServing, proto.NotHead, proto.ChainVersionMismatch:
		return true
	}
	return false
}

// outage is the wait of one call for an unreachable cluster.
type outage struct {
	deadline time.Time
	backoff  time.Duration
}

// again reports whether a call of method that failed with err should be
// made again, after waiting for the next try. It says no for every other
// error, once the wait exceeds the client's RetryTimeout, for a canceled
// ctx and for a closed client.
func (c *Client) again(ctx context.Context, o *outage, method uint16, err error) bool {
	if c.retryTimeout <= 0 || ctx.Err() != nil || c.bg.Err() != nil {
		return false
	}
	msg := "cluster unreachable; waiting for it"
	switch code := proto.CodeOf(err); {
	case code == proto.Unavailable:
		if !idempotent(method) && !errors.Is(err, rpc.ErrNotSent) {
			return false
		}
	case failingOver(code):
		msg = "chain failing over; waiting for its new routing"
	default:
		return false
	}
	now := time.Now()
	if o.deadline.IsZero() {
		o.deadline, o.backoff = now.Add(c.retryTimeout), 20*time.Millisecond
		c.waitLog.Warn().Err(err).Dur("for", c.retryTimeout).Msg(msg)
	}
	if !now.Before(o.deadline) {
		return false
	}
	t := time.NewTimer(min(o.backoff, o.deadline.Sub(now)))
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return false
	case <-c.bg.Done():
		return false
	}
	o.backoff = min(2*o.backoff, time.Second)
	return true
}
