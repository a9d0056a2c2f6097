package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"

	timev1 "github.com/meridiantime/meridian/api/meridian/time/v1"
)

// decodeDoc is the check every --json test applies to one document,
// independent of how meridianctl builds it: exactly one line; strictly the
// proto3 JSON mapping of CtlOutput (protojson.Unmarshal refuses an unknown
// or renamed key); schema "meridian.time.v1"; and, walking the .proto's
// descriptors, exactly the keys the .proto names (snake_case, every field
// present, one body), every 64-bit integer a JSON string.
func decodeDoc(out string) (*timev1.CtlOutput, error) {
	if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
		return nil, fmt.Errorf("want one document on one line, got %q", out)
	}
	doc := &timev1.CtlOutput{}
	if err := protojson.Unmarshal([]byte(out), doc); err != nil {
		return nil, fmt.Errorf("not a meridian.time.v1.CtlOutput: %v", err)
	}
	if doc.Schema != "meridian.time.v1" {
		return nil, fmt.Errorf("schema %q, want meridian.time.v1", doc.Schema)
	}
	dec := json.NewDecoder(strings.NewReader(out))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if err := checkKeys(doc.ProtoReflect().Descriptor(), v, "$"); err != nil {
		return nil, err
	}
	return doc, nil
}

// splitDocs checks each line of a streaming command's output.
func splitDocs(out string) ([]*timev1.CtlOutput, error) {
	var docs []*timev1.CtlOutput
	for line := range strings.Lines(out) {
		d, err := decodeDoc(line)
		if err != nil {
			return nil, err
		}
		docs = append(docs, d)
	}
	return docs, nil
}

func checkKeys(md protoreflect.MessageDescriptor, v any, path string) error {
	obj, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("%s: want an object (%s), got %T", path, md.FullName(), v)
	}
	want := map[string]protoreflect.FieldDescriptor{}
	fields := md.Fields()
	for i := range fields.Len() {
		if fd := fields.Get(i); fd.ContainingOneof() == nil {
			want[string(fd.Name())] = fd
		}
	}
	oneofs := md.Oneofs()
	for i := range oneofs.Len() {
		o, n := oneofs.Get(i), 0
		for j := range o.Fields().Len() {
			if fd := o.Fields().Get(j); obj[string(fd.Name())] != nil {
				want[string(fd.Name())] = fd
				n++
			}
		}
		if n != 1 {
			return fmt.Errorf("%s: %d members of oneof %s present, want 1", path, n, o.Name())
		}
	}
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		if _, ok := want[k]; !ok {
			return fmt.Errorf("%s.%s: not a field of %s (by its .proto name)", path, k, md.FullName())
		}
	}
	for _, k := range slices.Sorted(maps.Keys(want)) {
		val, ok := obj[k]
		if !ok {
			return fmt.Errorf("%s.%s: missing (every field is present, zero or not)", path, k)
		}
		fd, p := want[k], path+"."+k
		var err error
		switch {
		case fd.IsMap():
			m, ok := val.(map[string]any)
			if !ok {
				return fmt.Errorf("%s: want an object, got %T", p, val)
			}
			for mk, mv := range m {
				if err = checkScalar(fd.MapValue(), mv, p+"."+mk); err != nil {
					break
				}
			}
		case fd.IsList():
			l, ok := val.([]any)
			if !ok {
				return fmt.Errorf("%s: want an array, got %T", p, val)
			}
			for i, e := range l {
				if err = checkScalar(fd, e, fmt.Sprintf("%s[%d]", p, i)); err != nil {
					break
				}
			}
		default:
			err = checkScalar(fd, val, p)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func checkScalar(fd protoreflect.FieldDescriptor, v any, path string) error {
	switch fd.Kind() {
	case protoreflect.MessageKind:
		if v == nil {
			return nil // an unset message: null
		}
		return checkKeys(fd.Message(), v, path)
	case protoreflect.Int64Kind, protoreflect.Uint64Kind, protoreflect.Sint64Kind, protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind:
		if _, ok := v.(string); !ok {
			return fmt.Errorf("%s: a 64-bit integer must be a JSON string, got %v (%T)", path, v, v)
		}
	case protoreflect.EnumKind:
		if _, ok := v.(string); !ok {
			return fmt.Errorf("%s: an enum must be its name, got %v", path, v)
		}
	}
	return nil
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
