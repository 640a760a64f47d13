// Graph-only stub: see go/third_party/modstubs/README.md.
module honnef.co/go/tools
