package ledgertest

import "errors"

// iterator walks a result set fixed when the query ran. Committed state cannot change while a
// transaction runs, so a snapshot is what a peer's iterator would return too.
type iterator[T any] struct {
	items  []T
	next   int
	closed bool
}

func newIterator[T any](items []T) *iterator[T] {
	return &iterator[T]{items: items}
}

// HasNext reports whether Next has another result.
func (it *iterator[T]) HasNext() bool {
	return !it.closed && it.next < len(it.items)
}

// Next returns the next result.
func (it *iterator[T]) Next() (T, error) {
	if !it.HasNext() {
		var zero T
		if it.closed {
			return zero, errors.New("ledgertest: Next called on a closed iterator")
		}
		return zero, errors.New("ledgertest: Next called on an exhausted iterator")
	}
	item := it.items[it.next]
	it.next++
	return item, nil
}

// Close releases the iterator; later calls to HasNext report false.
func (it *iterator[T]) Close() error {
	it.closed = true
	return nil
}
