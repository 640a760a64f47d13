module coprocess/go

go 1.19

require (
	github.com/gomodule/redigo v1.8.3
	google.golang.org/protobuf v1.28.1
)

// No module proxy is needed: Debian's packaged sources (scripts/setup.sh installs them).
replace (
	github.com/gomodule/redigo => /usr/share/gocode/src/github.com/gomodule/redigo
	google.golang.org/protobuf => /usr/share/gocode/src/google.golang.org/protobuf
)
