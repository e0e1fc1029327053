package main

import (
	"io"

	"github.com/palisade-lb/palisade/internal/admin"
)

func cmdCtl(args []string, stdout, stderr io.Writer) int { return admin.Ctl(args, stdout, stderr) }
