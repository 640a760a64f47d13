module coprocess/go

go 1.19

require (
	github.com/gomodule/redigo v1.8.3
	google.golang.org/grpc v1.33.3
	google.golang.org/protobuf v1.28.1
)

require (
	github.com/golang/protobuf v1.5.2 // indirect
	golang.org/x/net v0.3.0 // indirect
	golang.org/x/sys v0.5.0 // indirect
	golang.org/x/text v0.7.0 // indirect
	google.golang.org/genproto v0.0.0-20200526211855-cb27e3aa2013 // indirect
)

// Built offline: every module comes from Debian's packaged sources under /usr/share/gocode
// (scripts/setup.sh installs them), and GOPROXY=off. grpc-go 1.33 (golang-google-grpc-dev)
// declares `go 1.11`, so its whole requirement graph is loaded although the packages we
// build import only a few of those modules; the modules of that graph Debian does not ship
// are replaced by stubs holding only a go.mod (third_party/modstubs: no code, nothing of
// them is compiled).
replace (
	github.com/golang/protobuf => /usr/share/gocode/src/github.com/golang/protobuf
	github.com/gomodule/redigo => /usr/share/gocode/src/github.com/gomodule/redigo
	github.com/google/go-cmp => /usr/share/gocode/src/github.com/google/go-cmp
	golang.org/x/net => /usr/share/gocode/src/golang.org/x/net
	golang.org/x/oauth2 => /usr/share/gocode/src/golang.org/x/oauth2
	golang.org/x/sys => /usr/share/gocode/src/golang.org/x/sys
	golang.org/x/text => /usr/share/gocode/src/golang.org/x/text
	google.golang.org/genproto => /usr/share/gocode/src/google.golang.org/genproto
	google.golang.org/grpc => /usr/share/gocode/src/google.golang.org/grpc
	google.golang.org/protobuf => /usr/share/gocode/src/google.golang.org/protobuf
)

// Graph-only modules: required by the go.mod files of grpc-go, genproto, x/net, x/oauth2 or
// redigo (testify); no package of them is imported.
replace (
	cloud.google.com/go/compute/metadata => ./third_party/modstubs/cloud.google.com/go/compute/metadata
	github.com/cncf/udpa/go => ./third_party/modstubs/github.com/cncf/udpa/go
	github.com/envoyproxy/go-control-plane => ./third_party/modstubs/github.com/envoyproxy/go-control-plane
	github.com/golang/glog => ./third_party/modstubs/github.com/golang/glog
	github.com/google/uuid => ./third_party/modstubs/github.com/google/uuid
	github.com/stretchr/testify => ./third_party/modstubs/github.com/stretchr/testify
	golang.org/x/lint => ./third_party/modstubs/golang.org/x/lint
	golang.org/x/mod => ./third_party/modstubs/golang.org/x/mod
	golang.org/x/term => ./third_party/modstubs/golang.org/x/term
	golang.org/x/tools => ./third_party/modstubs/golang.org/x/tools
	google.golang.org/appengine => ./third_party/modstubs/google.golang.org/appengine
	honnef.co/go/tools => ./third_party/modstubs/honnef.co/go/tools
)
