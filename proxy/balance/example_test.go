package balance_test

import (
	"fmt"
	"net/netip"

	"github.com/palisade-lb/palisade/proxy/balance"
)

type server struct {
	id     string
	weight int
}

func (s *server) ID() string   { return s.id }
func (s *server) Weight() int  { return s.weight }
func (s *server) Conns() int64 { return 0 }

func ExampleNew() {
	app1 := &server{"app/app1", 2}
	app2 := &server{"app/app2", 1}
	rr, err := balance.New(balance.RoundRobin, []balance.Server{app1, app2})
	if err != nil {
		panic(err)
	}
	// A retry excludes the server that just failed.
	tried := balance.Server(app1)
	for range 3 {
		fmt.Print(rr.Pick(0, nil).ID(), " ")
	}
	fmt.Println(rr.Pick(0, func(s balance.Server) bool { return s == tried }).ID())

	src, _ := balance.New(balance.Source, []balance.Server{app1, app2})
	client := netip.MustParseAddr("198.51.100.7")
	fmt.Println(src.Pick(balance.HashIP(client), nil) == src.Pick(balance.HashIP(client), nil))
	// Output:
	// app/app1 app/app2 app/app1 app/app2
	// true
}
