package main

import (
	"fmt"
	"io"
)

func cmdCtl(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "palisade ctl: the admin API is not built yet")
	return 1
}
