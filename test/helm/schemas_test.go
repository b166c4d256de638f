package helm

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
)

// kubeconform validates against JSON schemas it normally downloads. The
// network is closed here, and the authoritative schemas are the API
// server's anyway: schemaWriter turns the local API server's OpenAPI v2
// document (built-in kinds and every installed CRD) into one standalone
// JSON schema per kind, named as kubeconform's -schema-location template
// below expects. It applies the same adjustments the published
// kubernetes-json-schema files carry: int-or-string and quantities accept
// both forms, and objects refuse unknown fields (strict mode).
type schemaWriter struct {
	defs  map[string]any
	byGVK map[schema.GroupVersionKind]string
}

// schemaLocation is kubeconform's -schema-location for a directory of
// schemaWriter's files. kubeconform gives Group as the whole apiVersion's
// group part, which for the core group is the version ("v1").
const schemaLocation = "{{ .ResourceKind }}_{{ .Group }}_{{ .ResourceAPIVersion }}.json"

func newSchemaWriter(ctx context.Context, client kubernetes.Interface) (*schemaWriter, error) {
	raw, err := client.Discovery().RESTClient().Get().AbsPath("/openapi/v2").SetHeader("Accept", "application/json").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading /openapi/v2: %w", err)
	}
	var doc struct {
		Definitions map[string]any `json:"definitions"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("decoding /openapi/v2: %w", err)
	}
	w := &schemaWriter{defs: doc.Definitions, byGVK: map[schema.GroupVersionKind]string{}}
	for name, def := range doc.Definitions {
		m, _ := def.(map[string]any)
		gvks, _ := m["x-kubernetes-group-version-kind"].([]any)
		for _, g := range gvks {
			gm, _ := g.(map[string]any)
			gvk := schema.GroupVersionKind{Group: str(gm["group"]), Version: str(gm["version"]), Kind: str(gm["kind"])}
			w.byGVK[gvk] = name
		}
	}
	w.fixQuantity()
	return w, nil
}

func str(v any) string { s, _ := v.(string); return s }

// write puts the schema of gvk into dir, named for schemaLocation.
func (w *schemaWriter) write(dir string, gvk schema.GroupVersionKind) error {
	name, ok := w.byGVK[gvk]
	if !ok {
		return fmt.Errorf("the API server publishes no schema for %s", gvk)
	}
	reachable := map[string]any{}
	w.collect(name, reachable)
	root, _ := adjust(w.defs[name]).(map[string]any)
	root["$schema"] = "http://json-schema.org/draft-07/schema#"
	root["definitions"] = reachable
	b, err := json.Marshal(root)
	if err != nil {
		return err
	}
	group := gvk.Group
	if group == "" {
		group = gvk.Version
	}
	file := fmt.Sprintf("%s_%s_%s.json", strings.ToLower(gvk.Kind), group, gvk.Version)
	return os.WriteFile(filepath.Join(dir, file), b, 0o644)
}

// collect adds the definition name and every one it refers to, adjusted.
func (w *schemaWriter) collect(name string, into map[string]any) {
	if _, done := into[name]; done {
		return
	}
	into[name] = adjust(w.defs[name]) // before recursing: definitions refer to themselves (JSONSchemaProps)
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["$ref"].(string); ok {
				w.collect(strings.TrimPrefix(ref, "#/definitions/"), into)
			}
			for _, c := range v {
				walk(c)
			}
		case []any:
			for _, c := range v {
				walk(c)
			}
		}
	}
	walk(w.defs[name])
}

var intOrString = map[string]any{"oneOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "integer"}}}

// adjust returns a copy of an OpenAPI v2 schema as a strict JSON schema.
func adjust(v any) any {
	switch v := v.(type) {
	case map[string]any:
		if v["format"] == "int-or-string" || v["x-kubernetes-int-or-string"] == true {
			return intOrString
		}
		out := map[string]any{}
		for k, c := range v {
			out[k] = adjust(c)
		}
		if _, hasProps := v["properties"]; hasProps && v["additionalProperties"] == nil && v["x-kubernetes-preserve-unknown-fields"] != true {
			out["additionalProperties"] = false
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, c := range v {
			out[i] = adjust(c)
		}
		return out
	}
	return v
}

// quantity: the API takes "100m" or 1 for a resource.Quantity; OpenAPI v2
// only says string.
func (w *schemaWriter) fixQuantity() {
	const q = "io.k8s.apimachinery.pkg.api.resource.Quantity"
	if _, ok := w.defs[q]; ok {
		w.defs[q] = map[string]any{"oneOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "number"}}}
	}
}
