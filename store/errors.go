package store

import (
	"errors"
	"strings"

	"gorm.io/gorm"
)

// Errors that callers branch on; they come wrapped with the id concerned.
var (
	ErrNotFound      = errors.New("not found")
	ErrExists        = errors.New("already exists")
	ErrInUse         = errors.New("in use")
	ErrFileNameTaken = errors.New("file name taken")
	ErrTransition    = errors.New("status change not allowed")
)

func isDuplicate(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, gorm.ErrDuplicatedKey) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "UNIQUE constraint failed") || strings.Contains(msg, "SQLSTATE 23505")
}

func isForeignKey(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, gorm.ErrForeignKeyViolated) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "FOREIGN KEY constraint failed") || strings.Contains(msg, "SQLSTATE 23503")
}

// isBusy reports SQLite's "database is locked" (SQLITE_BUSY, and
// SQLITE_LOCKED), extended codes included.
func isBusy(err error) bool {
	var coded interface{ Code() int }
	if errors.As(err, &coded) {
		code := coded.Code() & 0xff
		return code == 5 || code == 6
	}
	return err != nil && strings.Contains(err.Error(), "(SQLITE_BUSY)")
}
