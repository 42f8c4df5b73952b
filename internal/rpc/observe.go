package rpc

import (
	"net"
	"time"

	"fff/internal/proto"
)

// Observer learns of every request a Server served, once its response was
// written or dropped (metrics; internal/metrics implements it). Served is
// called from many goroutines at once and must not block.
type Observer interface {
	Served(c *CallInfo)
}

// CallInfo describes one served request. It is valid only during the
// Served call.
type CallInfo struct {
	Method uint16
	ID     uint64 // the request id of its connection
	Status proto.Code
	Remote net.Addr
	// In and Out are the request's and the response's frame sizes
	// (header, body and payload).
	In, Out int
	// The stages: Queued from the request's header's arrival to its
	// handler's start (the body and payload read included), Handler the handler's run, Write from its return until the
	// response was written (or dropped).
	Queued, Handler, Write time.Duration
}

// Total is the time from the request's arrival to its response's end.
func (c *CallInfo) Total() time.Duration { return c.Queued + c.Handler + c.Write }

// DefaultSlowRequest is the time beyond which a served request is logged
// with its stages (ServerOptions.SlowRequest).
const DefaultSlowRequest = time.Second

// ServerStats is a Server's state at one moment (Server.Stats).
type ServerStats struct {
	Conns    int   // connections being served
	InFlight int64 // requests received and not yet answered
	// HeldBytes are the request bytes held by all connections
	// (MaxTotalBytes bounds those of large requests).
	HeldBytes int64
	// RefusedConns counts connections refused for MaxConns.
	RefusedConns int64
}

// Stats reports the server's connections and requests in flight.
func (s *Server) Stats() ServerStats {
	s.mu.Lock()
	conns, refused := len(s.conns), s.refused
	s.mu.Unlock()
	s.total.mu.Lock()
	held := s.total.bytes
	s.total.mu.Unlock()
	return ServerStats{Conns: conns, InFlight: s.inFlight.Load(), HeldBytes: int64(held), RefusedConns: int64(refused)}
}

// served reports a finished call to the observer and logs it if slow.
func (c *serverCall) served(end time.Time) {
	s := c.sc.s
	ci := CallInfo{
		Method: c.h.method,
		ID:     c.h.id,
		Status: c.status,
		Remote: c.sc.nc.RemoteAddr(),
		In:     headerSize + c.size,
		Out:    c.out,
	}
	if !c.runAt.IsZero() {
		ci.Queued = c.runAt.Sub(c.recvAt)
		ci.Handler = c.answerAt.Sub(c.runAt)
		ci.Write = end.Sub(c.answerAt)
	} else {
		ci.Queued = end.Sub(c.recvAt)
	}
	if s.opts.Observer != nil {
		s.opts.Observer.Served(&ci)
	}
	if slow := s.opts.SlowRequest; slow > 0 && ci.Total() >= slow {
		s.log.Warn().Str("method", proto.MethodName(ci.Method)).Uint64("request", ci.ID).Stringer("peer", ci.Remote).Stringer("status", ci.Status).
			Dur("total", ci.Total()).Dur("queued", ci.Queued).Dur("handler", ci.Handler).Dur("write", ci.Write).
			Int("in_bytes", ci.In).Int("out_bytes", ci.Out).Msg("rpc: slow request")
	}
}
