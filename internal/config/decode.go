package config

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Pos is a 1-based line and column in the config file.
type Pos struct{ Line, Col int }

// At records where a mapping and its keys stood in the file. Every schema
// struct embeds it so validation can point at the offending value.
type At struct {
	pos   Pos
	vals  map[string]Pos
	items map[string][]Pos
}

// Pos returns the position of the mapping itself.
func (a *At) Pos() Pos { return a.pos }

// Has reports whether key was written in the file (rather than defaulted or inherited).
func (a *At) Has(key string) bool { _, ok := a.vals[key]; return ok }

// KeyPos returns the position of key's value, or of the mapping when the key is absent.
func (a *At) KeyPos(key string) Pos {
	if p, ok := a.vals[key]; ok {
		return p
	}
	return a.pos
}

// ItemPos returns the position of the i-th item of the sequence under key.
func (a *At) ItemPos(key string, i int) Pos {
	if ps := a.items[key]; i < len(ps) {
		return ps[i]
	}
	return a.KeyPos(key)
}

// Error is one problem in a config file.
type Error struct {
	File string
	Pos
	Msg string
}

func (e Error) Error() string {
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
}

// Errors is every problem found in a file, in file order.
type Errors []Error

func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// AsErrors extracts the list of config errors from err (nil when err is not one).
func AsErrors(err error) Errors {
	var es Errors
	if errors.As(err, &es) {
		return es
	}
	var e Error
	if errors.As(err, &e) {
		return Errors{e}
	}
	return nil
}

// Messages returns the text of each config error in err, or err's own text
// when it holds none.
func Messages(err error) []string {
	es := AsErrors(err)
	if len(es) == 0 {
		return []string{err.Error()}
	}
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Error()
	}
	return out
}

type scalarDecoder interface{ decodeScalar(string) error }

var (
	atType            = reflect.TypeOf(At{})
	scalarDecoderType = reflect.TypeOf((*scalarDecoder)(nil)).Elem()
)

type decoder struct {
	file string
	errs Errors
	root *File
}

func (d *decoder) errAt(p Pos, format string, args ...any) {
	d.errs = append(d.errs, Error{File: d.file, Pos: p, Msg: fmt.Sprintf(format, args...)})
}

func posOf(n *yaml.Node) Pos { return Pos{Line: n.Line, Col: n.Column} }

func (d *decoder) fail(n *yaml.Node, format string, args ...any) {
	d.errAt(posOf(n), format, args...)
}

// field describes one schema key.
type field struct {
	index    int
	key      string
	def      string
	hasDef   bool
	enum     []string
	min, max string
	required bool
	doc      string
}

var fieldCache = map[reflect.Type][]field{}

func fieldsOf(t reflect.Type) []field {
	if fs, ok := fieldCache[t]; ok {
		return fs
	}
	var fs []field
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		key := sf.Tag.Get("yaml")
		if key == "" || sf.Type == atType {
			continue
		}
		f := field{index: i, key: key, min: sf.Tag.Get("min"), max: sf.Tag.Get("max"),
			required: sf.Tag.Get("required") == "true", doc: sf.Tag.Get("doc")}
		f.def, f.hasDef = sf.Tag.Lookup("default")
		if e, ok := sf.Tag.Lookup("enum"); ok {
			f.enum = strings.Split(e, "|")
		}
		fs = append(fs, f)
	}
	fieldCache[t] = fs
	return fs
}

func keysOf(fs []field) string {
	ks := make([]string, len(fs))
	for i, f := range fs {
		ks[i] = f.key
	}
	return strings.Join(ks, ", ")
}

// applyDefaults sets tag defaults on every field of struct v, recursively.
func applyDefaults(v reflect.Value) {
	for _, f := range fieldsOf(v.Type()) {
		fv := v.Field(f.index)
		if f.hasDef {
			var n yaml.Node
			if err := yaml.Unmarshal([]byte(f.def), &n); err != nil {
				panic(fmt.Sprintf("config: bad default tag %q: %v", f.def, err))
			}
			sub := &decoder{file: "<default>"}
			if fv.Kind() == reflect.Struct {
				applyDefaults(fv)
			}
			if len(n.Content) > 0 {
				sub.value(n.Content[0], fv, f.key)
			} else {
				fv.Set(reflect.Zero(fv.Type()))
			}
			if len(sub.errs) > 0 {
				panic(fmt.Sprintf("config: bad default tag %q: %v", f.def, sub.errs))
			}
			continue
		}
		if fv.Kind() == reflect.Struct && fv.Type() != atType {
			if _, ok := fv.Addr().Interface().(scalarDecoder); !ok {
				applyDefaults(fv)
			}
		}
	}
}

func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return "nothing"
		case "!!bool":
			return "a boolean"
		case "!!int", "!!float":
			return "a number"
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

// value decodes n into v; key names the field for messages.
func (d *decoder) value(n *yaml.Node, v reflect.Value, key string) {
	n = resolve(n)
	if v.CanAddr() {
		if sd, ok := v.Addr().Interface().(scalarDecoder); ok {
			if n.Kind != yaml.ScalarNode || isNull(n) {
				d.fail(n, "%s: expected a single value, got %s", key, kindName(n))
				return
			}
			if err := sd.decodeScalar(n.Value); err != nil {
				d.fail(n, "%s: %v", key, err)
			}
			return
		}
	}
	switch v.Kind() {
	case reflect.Struct:
		d.structure(n, v, key)
	case reflect.Pointer:
		if isNull(n) {
			return
		}
		nv := reflect.New(v.Type().Elem())
		if v.IsNil() {
			applyDefaults(nv.Elem())
		} else {
			nv.Elem().Set(v.Elem())
		}
		d.value(n, nv.Elem(), key)
		v.Set(nv)
	case reflect.String:
		if n.Kind != yaml.ScalarNode || isNull(n) || n.Tag == "!!bool" {
			d.fail(n, "%s: expected a string, got %s", key, kindName(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Int:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
			d.fail(n, "%s: expected an integer, got %s", key, kindName(n))
			return
		}
		i, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64)
		if err != nil {
			d.fail(n, "%s: %q is not a valid integer", key, n.Value)
			return
		}
		v.SetInt(i)
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			d.fail(n, "%s: expected true or false, got %s", key, kindName(n))
			return
		}
		b, _ := strconv.ParseBool(strings.ToLower(n.Value))
		v.SetBool(b)
	case reflect.Slice:
		if isNull(n) {
			v.Set(reflect.Zero(v.Type()))
			return
		}
		if n.Kind != yaml.SequenceNode {
			d.fail(n, "%s: expected a list, got %s", key, kindName(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			ev := s.Index(i)
			if ev.Kind() == reflect.Struct {
				applyDefaults(ev)
				d.inherit(ev)
			}
			d.value(item, ev, strings.TrimSuffix(key, "s"))
		}
		v.Set(s)
	case reflect.Map:
		if isNull(n) {
			return
		}
		if n.Kind != yaml.MappingNode {
			d.fail(n, "%s: expected a mapping, got %s", key, kindName(n))
			return
		}
		m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := resolve(n.Content[i]), resolve(n.Content[i+1])
			if k.Kind != yaml.ScalarNode {
				d.fail(k, "%s: keys must be strings", key)
				continue
			}
			if m.MapIndex(reflect.ValueOf(k.Value)).IsValid() {
				d.fail(k, "%s: duplicate key %q", key, k.Value)
				continue
			}
			ev := reflect.New(v.Type().Elem()).Elem()
			d.value(val, ev, key+"."+k.Value)
			m.SetMapIndex(reflect.ValueOf(k.Value), ev)
		}
		v.Set(m)
	default:
		panic(fmt.Sprintf("config: unsupported schema kind %s", v.Kind()))
	}
}

// inherit pre-fills a new frontend or backend with the file's defaults section,
// so keys it does not set keep the inherited value.
func (d *decoder) inherit(v reflect.Value) {
	if d.root == nil {
		return
	}
	def := d.root.Defaults
	switch e := v.Addr().Interface().(type) {
	case *Frontend:
		e.Timeouts = def.Timeouts
		e.Timeouts.At = At{}
	case *Backend:
		e.Retries = def.Retries
		e.Timeouts = def.Timeouts
		e.Timeouts.At = At{}
		e.Health = def.Health
		e.Health.At = At{}
	}
}

func (d *decoder) structure(n *yaml.Node, v reflect.Value, key string) {
	at := v.FieldByName("At").Addr().Interface().(*At)
	at.pos = posOf(n)
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.fail(n, "%s: expected a mapping, got %s", key, kindName(n))
		return
	}
	fs := fieldsOf(v.Type())
	at.vals = map[string]Pos{}
	pairs := make([][2]*yaml.Node, 0, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		pairs = append(pairs, [2]*yaml.Node{n.Content[i], n.Content[i+1]})
	}
	if v.Type() == reflect.TypeOf(File{}) {
		// defaults first: frontends and backends inherit from it.
		sort.SliceStable(pairs, func(i, j int) bool {
			return pairs[i][0].Value == "defaults" && pairs[j][0].Value != "defaults"
		})
	}
	for _, p := range pairs {
		k, val := resolve(p[0]), resolve(p[1])
		if k.Kind != yaml.ScalarNode {
			d.fail(k, "keys must be strings")
			continue
		}
		var f *field
		for i := range fs {
			if fs[i].key == k.Value {
				f = &fs[i]
				break
			}
		}
		if f == nil {
			if k.Value == "<<" {
				d.fail(k, "YAML merge keys (<<) are not supported; write the keys out")
				continue
			}
			where := ""
			if key != "" {
				where = " in " + key
			}
			d.fail(k, "unknown key %q%s (known keys: %s)", k.Value, where, keysOf(fs))
			continue
		}
		if _, dup := at.vals[k.Value]; dup {
			d.fail(k, "duplicate key %q", k.Value)
			continue
		}
		at.vals[k.Value] = posOf(val)
		if val.Kind == yaml.SequenceNode {
			if at.items == nil {
				at.items = map[string][]Pos{}
			}
			ps := make([]Pos, len(val.Content))
			for i, it := range val.Content {
				ps[i] = posOf(resolve(it))
			}
			at.items[k.Value] = ps
		}
		fv := v.Field(f.index)
		before := len(d.errs)
		d.value(val, fv, k.Value)
		if len(d.errs) == before {
			d.check(val, fv, f)
		}
	}
	for _, f := range fs {
		if f.required {
			if _, ok := at.vals[f.key]; !ok {
				where := ""
				if key != "" {
					where = " in " + key
				}
				d.fail(n, "missing required key %q%s", f.key, where)
			}
		}
	}
}

// check applies enum and range tags to a decoded field.
func (d *decoder) check(n *yaml.Node, v reflect.Value, f *field) {
	if len(f.enum) > 0 {
		got := fmt.Sprint(v.Interface())
		ok := false
		for _, e := range f.enum {
			if e == got {
				ok = true
				break
			}
		}
		if !ok {
			shown := make([]string, 0, len(f.enum))
			for _, e := range f.enum {
				if e != "" {
					shown = append(shown, e)
				}
			}
			d.fail(n, "%s: %q is not one of %s", f.key, got, strings.Join(shown, ", "))
		}
	}
	if f.min == "" && f.max == "" {
		return
	}
	switch x := v.Interface().(type) {
	case int:
		lo, hi := int64(minInt), int64(maxInt)
		if f.min != "" {
			lo, _ = strconv.ParseInt(f.min, 10, 64)
		}
		if f.max != "" {
			hi, _ = strconv.ParseInt(f.max, 10, 64)
		}
		if int64(x) < lo || int64(x) > hi {
			d.fail(n, "%s: %d is out of range (%s)", f.key, x, rangeText(f))
		}
	case Duration:
		if x == 0 && f.min != "" && !f.required {
			// 0 means "unset / use the default" for optional durations with a floor
			if f.def == "" {
				return
			}
		}
		if f.min != "" {
			lo, _ := time.ParseDuration(f.min)
			if x.D() < lo {
				d.fail(n, "%s: %s is below the minimum %s", f.key, x, f.min)
			}
		}
		if f.max != "" {
			hi, _ := time.ParseDuration(f.max)
			if x.D() > hi {
				d.fail(n, "%s: %s is above the maximum %s", f.key, x, f.max)
			}
		}
	}
}

const (
	maxInt = int(^uint(0) >> 1)
	minInt = -maxInt - 1
)

func rangeText(f *field) string {
	switch {
	case f.min != "" && f.max != "":
		return f.min + ".." + f.max
	case f.min != "":
		return "at least " + f.min
	default:
		return "at most " + f.max
	}
}
