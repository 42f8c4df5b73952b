// Package rpc is the wire every fff component speaks: framed msgpack RPC over
// TCP with many concurrent requests per connection, raw payloads that the
// receiver reads straight into its destination buffer, a challenge-response
// handshake that proves a token without sending it (handshake.go), optional
// TLS on TCP (ServerOptions.TLS, ClientOptions.TLS), per-request deadlines
// and cancellation, and typed status codes (package proto). The byte-level
// protocol is documented in docs/wire.md.
//
// # Server
//
//	s := rpc.NewServer(rpc.ServerOptions{Auth: rpc.NewStaticTokens(tokens), Logger: log})
//	s.Handle(methodStat, rpc.AccessUser, func(ctx context.Context, req *rpc.Request) (*rpc.Response, error) {
//		var r StatReq
//		if err := req.Decode(&r); err != nil {
//			return nil, err
//		}
//		// req.Identity is the caller; ctx carries its deadline.
//		return &rpc.Response{Body: StatResp{...}}, nil
//	})
//	go s.Serve(listener)
//	...
//	s.Shutdown(ctx)
//
// Each connection has one reader, runs every request in its own goroutine
// (bounded per connection by ServerOptions.MaxInFlight and
// MaxInFlightBytes: at the bound the server stops reading that connection),
// and writes responses through one coalescing writer: headers, bodies and
// small payloads are packed into one buffer, large payload segments are
// passed to writev uncopied, and the socket is written whenever the queue of
// finished responses runs empty. A request whose deadline has passed when its
// turn comes is answered with proto.Timeout without running the handler. A
// handler error becomes the response's status (proto.CodeOf) and message.
//
// # Client
//
//	c, err := rpc.Dial(ctx, addr, token, rpc.ClientOptions{})
//	n, err := c.Call(ctx, method, req, &resp, rpc.IntoBuffer(dst))
//
// A Conn multiplexes any number of concurrent calls by request id; one
// goroutine reads responses (and payloads, straight into the IntoBuffer
// destinations), one writes requests. A Pool keeps a few connections to one
// server, dials lazily and redials after failures.
//
// Cancellation: when a call's context ends, Call returns promptly with the
// context's error, the server is told (a cancel frame; on a deadline, the
// server's copy of the deadline fires by itself) and the late response is
// discarded. Memory the caller handed over (WithPayload segments, the
// IntoBuffer destination) is never touched after Call returns: the reader
// fills the destination chunk by chunk under a per-call lock and stops at
// the next chunk once the call is abandoned; if a transfer of the caller's
// memory is stuck in the kernel for longer than ClientOptions.CancelGrace,
// the connection is closed to free it.
//
// Failures: a lost connection fails every pending call with
// proto.Unavailable; server errors arrive as *proto.Error. Nothing in this
// package keeps package-level mutable state; buffer pools belong to a Server
// or Conn.
package rpc
