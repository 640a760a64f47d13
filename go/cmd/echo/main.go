// Command echo is the demo's upstream service: it answers every request with a JSON
// description of what it received (method, path, query, headers, body).
package main

import (
	"flag"
	"log"
	"net/http"
	"time"

	"coprocess/go/internal/echo"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8081", "address to listen on")
	flag.Parse()
	srv := &http.Server{Addr: *listen, Handler: echo.Handler(), ReadHeaderTimeout: 10 * time.Second}
	log.Printf("echo upstream listening on http://%s", *listen)
	log.Fatal(srv.ListenAndServe())
}
