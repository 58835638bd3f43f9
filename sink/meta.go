package sink

import (
	"context"
	"fmt"
	"io"
	"strings"
)

// The engine's ledger lives next to the data, under _heal/, which no
// dataset can be named (dataset names cannot start with '_'). The lake
// index lives there too, under _heal/index/, which the MetaStore methods
// neither show nor let anyone write.

// reservedMeta is the part of _heal/ the lake keeps for itself; the
// wrapped data keys of encrypted files live under keysMeta (see
// Encryption), also hidden.
const (
	reservedMeta = "index/"
	keysMeta     = "keys/"
)

func reserved(name string) bool {
	return strings.HasPrefix(name, reservedMeta) || strings.HasPrefix(name, keysMeta)
}

func checkMetaName(name string) error {
	if err := validName(name); err != nil {
		return err
	}
	if reserved(name) {
		return fmt.Errorf("heal/sink: meta name %q: %s and %s are reserved for the lake index and data keys", name, reservedMeta, keysMeta)
	}
	return nil
}

// PutMeta implements [heal.MetaStore]: a create-only put of _heal/<name>.
func (l *Lake) PutMeta(ctx context.Context, name string, data []byte) error {
	if err := checkMetaName(name); err != nil {
		return fmt.Errorf("heal/sink: put meta: %w", err)
	}
	if err := l.store.Put(ctx, metaPrefix+name, data, true); err != nil {
		return fmt.Errorf("heal/sink: put meta %s: %w", name, err)
	}
	return nil
}

// GetMeta implements [heal.MetaStore].
func (l *Lake) GetMeta(ctx context.Context, name string) ([]byte, error) {
	if err := checkMetaName(name); err != nil {
		return nil, fmt.Errorf("heal/sink: get meta: %w", err)
	}
	obj, err := l.store.Open(ctx, metaPrefix+name)
	if err != nil {
		return nil, fmt.Errorf("heal/sink: get meta %s: %w", name, err)
	}
	defer obj.Close()
	data, err := io.ReadAll(io.NewSectionReader(obj, 0, obj.Size()))
	if err != nil {
		return nil, fmt.Errorf("heal/sink: get meta %s: %w", name, err)
	}
	return data, nil
}

// ListMeta implements [heal.MetaStore]. The names are sorted; the lake
// index is not among them.
func (l *Lake) ListMeta(ctx context.Context, prefix string) ([]string, error) {
	var names []string
	err := l.store.List(ctx, metaPrefix+prefix, func(oi ObjectInfo) error {
		if name := strings.TrimPrefix(oi.Name, metaPrefix); !reserved(name) {
			names = append(names, name)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("heal/sink: list meta %q: %w", prefix, err)
	}
	return names, nil
}

// DeleteMeta implements [heal.MetaStore].
func (l *Lake) DeleteMeta(ctx context.Context, name string) error {
	if err := checkMetaName(name); err != nil {
		return fmt.Errorf("heal/sink: delete meta: %w", err)
	}
	if err := l.store.Delete(ctx, metaPrefix+name); err != nil {
		return fmt.Errorf("heal/sink: delete meta %s: %w", name, err)
	}
	return nil
}
