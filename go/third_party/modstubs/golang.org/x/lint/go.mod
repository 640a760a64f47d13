// Graph-only stub: see go/third_party/modstubs/README.md.
module golang.org/x/lint
