// Graph-only stub: see go/third_party/modstubs/README.md.
module github.com/google/uuid
