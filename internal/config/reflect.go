package config

import (
	"reflect"
	"sort"
)

func reflectValue(p any) reflect.Value { return reflect.ValueOf(p).Elem() }

func sortErrors(es Errors) {
	sort.SliceStable(es, func(i, j int) bool {
		if es[i].Line != es[j].Line {
			return es[i].Line < es[j].Line
		}
		return es[i].Col < es[j].Col
	})
}
