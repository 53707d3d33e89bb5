package config

import (
	"fmt"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

// Bounds on what one decode walks, so that a hostile or broken file cannot
// make it run away: aliases can make a small file expand enormously.
const (
	maxNodes      = 100_000 // YAML values visited, aliases included
	maxMergeDepth = 8       // nested "<<" merges
)

var (
	secretType      = reflect.TypeFor[Secret]()
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
)

// decoder walks a yaml.Node tree into the schema structs by their yaml tags,
// strictly: an unknown key, a duplicate key or a wrong type is a Problem
// with its path and line, and decoding carries on so that every problem is
// found in one pass.
type decoder struct {
	refs     *resolver
	lines    lineIndex       // path → line, filled as values are visited
	failed   map[string]bool // paths that had a decode problem
	problems Problems
	dropped  int // problems beyond maxProblems, counted only
	nodes    int // values visited so far, for maxNodes
}

// pair is one key and value of a mapping, after merges.
type pair struct {
	key     string
	keyNode *yaml.Node
	value   *yaml.Node
}

func newDecoder(refs *resolver) *decoder {
	return &decoder{refs: refs, lines: lineIndex{}, failed: map[string]bool{}}
}

// addf records a problem at path and line.
func (d *decoder) addf(path string, line int, format string, args ...any) {
	if path != "" {
		d.failed[path] = true
	}
	if len(d.problems) >= maxProblems {
		d.dropped++
		return
	}
	d.problems = append(d.problems, Problem{Path: path, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// follow resolves an alias and counts the value against maxNodes; it
// returns nil once the budget is spent.
func (d *decoder) follow(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < maxMergeDepth; i++ {
		n = n.Alias
	}
	d.nodes++
	if d.nodes == maxNodes+1 {
		d.addf("", 0, "the file has more than %d values once aliases are expanded; write it out plainly", maxNodes)
	}
	if n == nil || n.Kind == yaml.AliasNode || d.nodes > maxNodes {
		return nil
	}
	return n
}

// decode stores the value of n into v, which is addressable.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if n = d.follow(n); n == nil {
		return
	}
	d.lines.set(path, n.Line)
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // absent value: keep the zero value, defaults fill it in
	}
	switch {
	case v.Type() == secretType:
		d.secret(n, v, path)
		return
	case v.Addr().Type().Implements(unmarshalerType):
		if err := v.Addr().Interface().(yaml.Unmarshaler).UnmarshalYAML(n); err != nil {
			d.addf(path, n.Line, "%v", err)
		}
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem(), path)
	case reflect.Struct:
		d.structure(n, v, path)
	case reflect.Map:
		d.mapping(n, v, path)
	case reflect.Slice:
		d.sequence(n, v, path)
	case reflect.String:
		d.str(n, v, path)
	case reflect.Int:
		d.integer(n, v, path)
	case reflect.Bool:
		d.boolean(n, v, path)
	default:
		d.addf(path, n.Line, "internal error: no decoder for %s", v.Type())
	}
}

// structure decodes a mapping into a struct by the fields' yaml tags and
// sets a `yaml:"-"` Line field to the line of the entry.
func (d *decoder) structure(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.addf(path, n.Line, "expected a mapping of keys to values, got %s", kindName(n))
		return
	}
	names, index := fieldsOf(v.Type())
	for _, p := range d.pairs(n, path, 0) {
		fp := joinPath(path, p.key)
		i, ok := index[p.key]
		if !ok {
			msg, nearest := unknownKey(p.key, names)
			d.addf(fp, p.keyNode.Line, "%s", msg)
			if nearest != "" {
				d.failed[joinPath(path, nearest)] = true // a misspelt key explains "missing"
			}
			continue
		}
		d.lines.set(fp, p.keyNode.Line)
		d.decode(p.value, v.Field(i), fp)
	}
	setLine(v, n.Line)
}

// setLine sets a struct's `yaml:"-"` Line field, if it has one.
func setLine(v reflect.Value, line int) {
	if v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return
	}
	if f, ok := v.Type().FieldByName("Line"); ok && f.Type.Kind() == reflect.Int && f.Tag.Get("yaml") == "-" {
		v.FieldByIndex(f.Index).SetInt(int64(line))
	}
}

// fieldsOf lists the yaml keys of a struct type in declaration order and
// maps each to its field index.
func fieldsOf(t reflect.Type) ([]string, map[string]int) {
	var names []string
	index := map[string]int{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "-" || name == "" {
			continue
		}
		names = append(names, name)
		index[name] = i
	}
	return names, index
}

// mapping decodes a mapping into a map with string keys.
func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.addf(path, n.Line, "expected a mapping of names to values, got %s", kindName(n))
		return
	}
	if v.IsNil() {
		v.Set(reflect.MakeMap(v.Type()))
	}
	et := v.Type().Elem()
	for _, p := range d.pairs(n, path, 0) {
		fp := joinPath(path, p.key)
		d.lines.set(fp, p.keyNode.Line)
		elem := reflect.New(et).Elem()
		d.decode(p.value, elem, fp)
		if elem.Kind() == reflect.Pointer && elem.IsNil() {
			elem.Set(reflect.New(et.Elem())) // "name:" with no body
		}
		setLine(elem, p.keyNode.Line) // a named entry is where its name is
		v.SetMapIndex(reflect.ValueOf(p.key).Convert(v.Type().Key()), elem)
	}
}

// sequence decodes a list into a slice.
func (d *decoder) sequence(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.SequenceNode {
		d.addf(path, n.Line, "expected a list (entries starting with \"- \"), got %s", kindName(n))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		d.decode(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
	}
	v.Set(s)
}

func (d *decoder) str(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.ScalarNode {
		d.addf(path, n.Line, "expected a single value, got %s", kindName(n))
		return
	}
	if _, _, ok := parseRef(n.Value); ok {
		d.addf(path, n.Line, "references like ${env:NAME} and ${file:PATH} are resolved only in secret fields (client_secret, password_hash, store.key, store.redis.password, notify.webhook); write the value itself here")
		return
	}
	v.SetString(n.Value)
}

func (d *decoder) integer(n *yaml.Node, v reflect.Value, path string) {
	var i int64
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&i) != nil || v.OverflowInt(i) {
		d.addf(path, n.Line, "expected a whole number, got %s", valueName(n))
		return
	}
	v.SetInt(i)
}

func (d *decoder) boolean(n *yaml.Node, v reflect.Value, path string) {
	var b bool
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
		d.addf(path, n.Line, "expected true or false, got %s", valueName(n))
		return
	}
	v.SetBool(b)
}

// secret decodes a Secret, resolving ${env:NAME} and ${file:PATH}. Problems
// name the reference, never the value.
func (d *decoder) secret(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.ScalarNode {
		d.addf(path, n.Line, "expected a single value, got %s", kindName(n))
		return
	}
	s, err := d.refs.resolve(n.Value, path)
	if err != nil {
		d.addf(path, n.Line, "%v", err)
		return
	}
	v.SetString(s)
}

// pairs returns the entries of mapping n with "<<" merge keys applied
// (explicit keys win over merged ones) and reports duplicate keys.
func (d *decoder) pairs(n *yaml.Node, path string, depth int) []pair {
	var explicit, merged []pair
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		switch {
		case k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge":
			merged = append(merged, d.merge(val, path, depth+1)...)
		case k.Kind != yaml.ScalarNode:
			d.addf(path, k.Line, "a key must be a plain name, got %s", kindName(k))
		default:
			explicit = append(explicit, pair{key: k.Value, keyNode: k, value: val})
		}
	}
	seen := map[string]int{}
	out := make([]pair, 0, len(explicit)+len(merged))
	for _, p := range explicit {
		if line, dup := seen[p.key]; dup {
			d.addf(joinPath(path, p.key), p.keyNode.Line, "key %q appears twice (first on line %d); remove one", p.key, line)
			continue
		}
		seen[p.key] = p.keyNode.Line
		out = append(out, p)
	}
	for _, p := range merged {
		if _, ok := seen[p.key]; !ok {
			seen[p.key] = p.keyNode.Line
			out = append(out, p)
		}
	}
	return out
}

// merge returns the entries a "<<" value brings in: one mapping, or a list
// of mappings where earlier ones win.
func (d *decoder) merge(val *yaml.Node, path string, depth int) []pair {
	if depth > maxMergeDepth {
		d.addf(path, val.Line, "merges (<<) nest deeper than %d levels", maxMergeDepth)
		return nil
	}
	n := d.follow(val)
	if n == nil {
		return nil
	}
	switch n.Kind {
	case yaml.MappingNode:
		return d.pairs(n, path, depth)
	case yaml.SequenceNode:
		var out []pair
		for _, item := range n.Content {
			if m := d.follow(item); m != nil && m.Kind == yaml.MappingNode {
				out = append(out, d.pairs(m, path, depth)...)
				continue
			}
			d.addf(path, item.Line, "<< merges mappings only")
		}
		return out
	}
	d.addf(path, n.Line, "<< merges mappings only, got %s", kindName(n))
	return nil
}

// joinPath appends a key to a YAML path.
func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// kindName names the shape of a node for messages, never its value.
func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return "a single value"
	case yaml.AliasNode:
		return "an alias"
	}
	return "a document"
}

// valueName shows a scalar quoted (for non-secret fields only) or names the
// node's shape.
func valueName(n *yaml.Node) string {
	if n.Kind == yaml.ScalarNode {
		return quoteShort(n.Value)
	}
	return kindName(n)
}

// maxQuoted bounds how much of a user's value a message repeats.
const maxQuoted = 60

// quoteShort quotes s for a message, cut to maxQuoted bytes.
func quoteShort(s string) string {
	if len(s) > maxQuoted {
		return fmt.Sprintf("%q...", s[:maxQuoted])
	}
	return fmt.Sprintf("%q", s)
}

// unknownKey words the problem of a key the schema does not have, with the
// nearest known key when one is close (also returned, "" when none is).
func unknownKey(key string, known []string) (msg, nearest string) {
	best, bestDist := "", 3
	for _, k := range known {
		if len(key) > len(k)+bestDist {
			continue // cannot be close; also keeps huge keys cheap
		}
		if dist := editDistance(strings.ToLower(key), k); dist < bestDist {
			best, bestDist = k, dist
		}
	}
	if best != "" {
		return fmt.Sprintf("unknown key %s; did you mean %q?", quoteShort(key), best), best
	}
	return fmt.Sprintf("unknown key %s; known: %s", quoteShort(key), strings.Join(known, ", ")), ""
}

// editDistance is the Levenshtein distance between two short strings.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// lineIndex maps YAML paths to lines.
type lineIndex map[string]int

// set records the first line seen for path.
func (l lineIndex) set(path string, line int) {
	if _, ok := l[path]; !ok && path != "" {
		l[path] = line
	}
}

// line returns the line of path, or of its nearest ancestor in the file (a
// missing key is reported at the entry that lacks it); 0 when unknown.
func (l lineIndex) line(path string) int {
	for ; path != ""; path = parentPath(path) {
		if n, ok := l[path]; ok {
			return n
		}
	}
	return 0
}
