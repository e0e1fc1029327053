package config

import (
	"fmt"
	"reflect"
	"strings"
)

// Reference renders the config reference (every key, its type, default and
// meaning) as Markdown, straight from the schema, for the README.
func Reference() string {
	var b strings.Builder
	b.WriteString("| key | type | default | meaning |\n|---|---|---|---|\n")
	refStruct(&b, reflect.TypeOf(File{}), "")
	return b.String()
}

func refStruct(b *strings.Builder, t reflect.Type, prefix string) {
	for _, f := range fieldsOf(t) {
		sf := t.Field(f.index)
		key := prefix + f.key
		ft := sf.Type
		typ, sub := typeName(ft)
		def := ""
		if f.hasDef {
			def = "`" + f.def + "`"
		}
		doc := f.doc
		if len(f.enum) > 0 {
			doc = strings.TrimSpace(doc + " (one of: " + strings.Join(nonEmpty(f.enum), ", ") + ")")
		}
		if f.min != "" || f.max != "" {
			doc = strings.TrimSpace(doc + " (range: " + rangeText(&f) + ")")
		}
		if f.required {
			doc = strings.TrimSpace("**required** " + doc)
		}
		fmt.Fprintf(b, "| `%s` | %s | %s | %s |\n", key, typ, def, strings.ReplaceAll(doc, "|", "\\|"))
		if sub != nil {
			p := key + "."
			if ft.Kind() == reflect.Slice {
				p = key + "[]."
			}
			refStruct(b, sub, p)
		}
	}
}

func nonEmpty(ss []string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// typeName describes a schema type and returns the struct to descend into, if any.
func typeName(t reflect.Type) (string, reflect.Type) {
	switch t {
	case reflect.TypeOf(Duration(0)):
		return "duration", nil
	case reflect.TypeOf(Rate{}):
		return "rate", nil
	case reflect.TypeOf(Prefix{}):
		return "CIDR", nil
	case reflect.TypeOf(Addr{}):
		return "IP", nil
	}
	switch t.Kind() {
	case reflect.Pointer:
		return typeName(t.Elem())
	case reflect.Struct:
		return "mapping", t
	case reflect.Slice:
		n, sub := typeName(t.Elem())
		return "list of " + n, sub
	case reflect.Map:
		return "mapping of strings", nil
	case reflect.Int:
		return "integer", nil
	case reflect.Bool:
		return "boolean", nil
	case reflect.String:
		return "string", nil
	}
	return t.String(), nil
}

// Markers around the generated reference in the README.
const (
	RefStart = "<!-- config-reference:start -->"
	RefEnd   = "<!-- config-reference:end -->"
)

// SpliceReference replaces the text between the markers in doc with Reference().
func SpliceReference(doc string) (string, error) {
	i := strings.Index(doc, RefStart)
	j := strings.Index(doc, RefEnd)
	if i < 0 || j < i {
		return "", fmt.Errorf("markers %s ... %s not found", RefStart, RefEnd)
	}
	return doc[:i+len(RefStart)] + "\n" + Reference() + doc[j:], nil
}
