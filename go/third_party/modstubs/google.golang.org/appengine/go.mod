// Graph-only stub: see go/third_party/modstubs/README.md.
module google.golang.org/appengine
