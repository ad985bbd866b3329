// Reads YAML documents with gopkg.in/yaml.v3, the parser bruin uses, and prints each as JSON in
// which every value is tagged with the Go type yaml.v3 gave it, so the tests can compare types
// exactly (JSON alone would not tell 5432 from 5432.0). One file path per argument.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"

	"gopkg.in/yaml.v3"
)

func tag(v interface{}) interface{} {
	switch x := v.(type) {
	case nil:
		return map[string]interface{}{"null": true}
	case bool:
		return map[string]interface{}{"bool": x}
	case int:
		return map[string]interface{}{"int": strconv.Itoa(x)}
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

func main() {
	var docs []interface{}
	for _, path := range os.Args[1:] {
		data, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		var doc interface{}
		if err := yaml.Unmarshal(data, &doc); err != nil {
			// yaml.v3's messages can quote the document: say where, not what.
			fmt.Fprintf(os.Stderr, "%s: yaml.v3 refused it\n", path)
			os.Exit(1)
		}
		docs = append(docs, tag(doc))
	}
	if err := json.NewEncoder(os.Stdout).Encode(docs); err != nil {
		os.Exit(2)
	}
}
