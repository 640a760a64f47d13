// Graph-only stub: see go/third_party/modstubs/README.md.
module cloud.google.com/go/compute/metadata
