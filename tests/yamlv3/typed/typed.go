// Reads a bruin config with gopkg.in/yaml.v3 the way bruin does: each connection field decoded
// into the Go type bruin's struct gives it (string, int64, float64, bool, a struct, a map or a
// slice of those), as bruin's connections JSON Schema says, and an unknown field into interface{}.
// Prints environment -> type -> [field -> value tagged with its Go type], or {"error": TYPE} for a
// field yaml.v3 refuses to decode (bruin's whole load fails then). yaml.v3's messages can quote the
// document, so none is printed. Usage: typed SCHEMA.json FILE.yml
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

type spec map[string]interface{}

var defs map[string]interface{}

func resolve(s spec) spec {
	if ref, ok := s["$ref"].(string); ok && strings.HasPrefix(ref, "#/$defs/") {
		if d, ok := defs[strings.TrimPrefix(ref, "#/$defs/")].(map[string]interface{}); ok {
			return spec(d)
		}
	}
	return s
}

func sub(s spec, key string) spec {
	if m, ok := s[key].(map[string]interface{}); ok {
		return spec(m)
	}
	return nil
}

func tag(v interface{}) interface{} {
	switch x := v.(type) {
	case nil:
		return map[string]interface{}{"null": true}
	case bool:
		return map[string]interface{}{"bool": x}
	case int:
		return map[string]interface{}{"int": strconv.Itoa(x)}
	case int64:
		return map[string]interface{}{"int": strconv.FormatInt(x, 10)}
	case uint64:
		return map[string]interface{}{"int": strconv.FormatUint(x, 10)}
	case float64:
		return map[string]interface{}{"float": strconv.FormatFloat(x, 'g', -1, 64)}
	case string:
		return map[string]interface{}{"str": x}
	case []interface{}:
		out := make([]interface{}, len(x))
		for i, item := range x {
			out[i] = tag(item)
		}
		return map[string]interface{}{"seq": out}
	case map[string]interface{}:
		out := make(map[string]interface{}, len(x))
		for k, item := range x {
			out[k] = tag(item)
		}
		return map[string]interface{}{"map": out}
	default:
		return map[string]interface{}{"other": fmt.Sprintf("%T", x)}
	}
}

func failed(what string) interface{} {
	return map[string]interface{}{"error": what}
}

func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// field decodes n as bruin's field of schema s gets it (s nil: interface{}).
func field(n *yaml.Node, s spec) interface{} {
	n = deref(n)
	if s == nil {
		var v interface{}
		if n.Decode(&v) != nil {
			return failed("any")
		}
		return tag(v)
	}
	s = resolve(s)
	kind, _ := s["type"].(string)
	switch {
	case kind == "string":
		var v string
		if n.Decode(&v) != nil {
			return failed("string")
		}
		return tag(v)
	case kind == "integer":
		var v int64
		if n.Decode(&v) != nil {
			return failed("integer")
		}
		return tag(v)
	case kind == "number":
		var v float64
		if n.Decode(&v) != nil {
			return failed("number")
		}
		return tag(v)
	case kind == "boolean":
		var v bool
		if n.Decode(&v) != nil {
			return failed("boolean")
		}
		return tag(v)
	case kind == "array":
		if isNull(n) {
			return tag(nil)
		}
		if n.Kind != yaml.SequenceNode {
			return failed("array")
		}
		out := []interface{}{}
		for _, item := range n.Content {
			out = append(out, field(item, sub(s, "items")))
		}
		return map[string]interface{}{"seq": out}
	case kind == "object" || s["properties"] != nil:
		if isNull(n) {
			return tag(nil)
		}
		return object(n, s)
	}
	return field(n, nil)
}

// object decodes a mapping into a struct (properties) or a map (additionalProperties).
func object(n *yaml.Node, s spec) interface{} {
	if n.Kind != yaml.MappingNode {
		return failed("object")
	}
	props := sub(s, "properties")
	out := map[string]interface{}{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		var key string
		if deref(n.Content[i]).Decode(&key) != nil {
			return failed("key")
		}
		var fs spec
		if props != nil {
			fs = sub(props, key)
		}
		if fs == nil {
			fs = sub(s, "additionalProperties")
		}
		out[key] = field(n.Content[i+1], fs)
	}
	return map[string]interface{}{"map": out}
}

func pairs(n *yaml.Node) map[string]*yaml.Node {
	out := map[string]*yaml.Node{}
	n = deref(n)
	if n == nil || n.Kind != yaml.MappingNode {
		return out
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		out[n.Content[i].Value] = deref(n.Content[i+1])
	}
	return out
}

func main() {
	raw, err := os.ReadFile(os.Args[1])
	if err != nil {
		os.Exit(2)
	}
	var schema map[string]interface{}
	if json.Unmarshal(raw, &schema) != nil {
		os.Exit(2)
	}
	defs, _ = schema["$defs"].(map[string]interface{})
	types := sub(sub(spec(defs), "Connections"), "properties")
	data, err := os.ReadFile(os.Args[2])
	if err != nil {
		os.Exit(2)
	}
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 {
		fmt.Fprintln(os.Stderr, "yaml.v3 refused it")
		os.Exit(1)
	}
	out := map[string]interface{}{}
	for env, e := range pairs(pairs(doc.Content[0])["environments"]) {
		conns := map[string]interface{}{}
		for typ, list := range pairs(pairs(e)["connections"]) {
			item := sub(resolve(sub(types, typ)), "items")
			var entries []interface{}
			if list != nil && list.Kind == yaml.SequenceNode {
				for _, c := range list.Content {
					if item == nil {
						entries = append(entries, field(c, nil))
					} else {
						entries = append(entries, object(deref(c), resolve(item)))
					}
				}
			}
			conns[typ] = entries
		}
		out[env] = conns
	}
	if json.NewEncoder(os.Stdout).Encode(out) != nil {
		os.Exit(2)
	}
}
