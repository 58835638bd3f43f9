package span

import (
	"math/rand"
	"reflect"
	"testing"
)

func TestSetAlgebra(t *testing.T) {
	a := Normalize([]Range{{5, 8}, {0, 2}, {2, 3}, {10, 10}, {7, 9}})
	if want := (Set{{0, 3}, {5, 9}}); !reflect.DeepEqual(a, want) {
		t.Fatalf("Normalize = %v, want %v", a, want)
	}
	b := Set{{1, 6}, {8, 20}}
	if got, want := Subtract(a, b), (Set{{0, 1}, {6, 8}}); !reflect.DeepEqual(got, want) {
		t.Errorf("Subtract = %v, want %v", got, want)
	}
	if got, want := Intersect(a, b), (Set{{1, 3}, {5, 6}, {8, 9}}); !reflect.DeepEqual(got, want) {
		t.Errorf("Intersect = %v, want %v", got, want)
	}
	if got, want := Union(a, b), (Set{{0, 20}}); !reflect.DeepEqual(got, want) {
		t.Errorf("Union = %v, want %v", got, want)
	}
	if got, want := FromSorted([]int64{1, 2, 2, 3, 7, 9, 10}), (Set{{1, 4}, {7, 8}, {9, 11}}); !reflect.DeepEqual(got, want) {
		t.Errorf("FromSorted = %v, want %v", got, want)
	}
	if !a.Contains(0) || a.Contains(3) || !a.Contains(8) || a.Contains(9) {
		t.Error("Contains wrong")
	}
}

// TestSubtractMatchesBitmap checks the range algebra against a plain bitmap
// on random sets.
func TestSubtractMatchesBitmap(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	for iter := 0; iter < 500; iter++ {
		var ab, bb [64]bool
		var as, bs []int64
		for i := range 64 {
			ab[i], bb[i] = r.Intn(3) == 0, r.Intn(2) == 0
			if ab[i] {
				as = append(as, int64(i))
			}
			if bb[i] {
				bs = append(bs, int64(i))
			}
		}
		got := Subtract(FromSorted(as), FromSorted(bs))
		inter := Intersect(FromSorted(as), FromSorted(bs))
		for i := range 64 {
			if got.Contains(int64(i)) != (ab[i] && !bb[i]) {
				t.Fatalf("iter %d: Subtract wrong at %d", iter, i)
			}
			if inter.Contains(int64(i)) != (ab[i] && bb[i]) {
				t.Fatalf("iter %d: Intersect wrong at %d", iter, i)
			}
		}
	}
}
