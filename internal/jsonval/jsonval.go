// Package jsonval holds the JSON encodings heal's packages share.
package jsonval

import "math"

// Float returns f as encoding/json can write it: the number itself, or
// "NaN", "+Inf" or "-Inf" as strings, which JSON numbers cannot hold.
func Float(f float64) any {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "+Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	}
	return f
}
