// Package pool is the caching allocator both backends use.
package pool
