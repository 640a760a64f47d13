package grpcclient

import (
	"path/filepath"
	"testing"
)

// BenchmarkDispatchHMAC: the HMAC-auth Object (the signature vector of
// docs/builtins/hmac-signature-auth.md) through the server with Go's gRPC client, as the
// gateway's gRPC driver sends it: proto.Marshal, the call over loopback TCP or a unix
// socket, proto.Unmarshal of the answer. One call at a time.
func BenchmarkDispatchHMAC(b *testing.B) {
	dir := b.TempDir()
	cfg := map[string]interface{}{"HMACSignatureAuth": builtinConfig()["HMACSignatureAuth"]}
	writeJSON(b, filepath.Join(dir, "coprocess.json"), cfg)
	s := startServer(b, serverArgs(dir)...)
	object := hmacObject(hmacSignature)
	for _, transport := range []string{"unix", "tcp"} {
		addr := s.unix
		if transport == "tcp" {
			addr = s.tcp
		}
		conn := dial(b, transport, addr)
		b.Run(transport, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				out, err := dispatch(conn, object)
				if err != nil || out.Metadata["token"] != "k1" {
					b.Fatalf("%v %v", err, out)
				}
			}
		})
	}
}
