package auth

// Argon2Runs reports how many argon2id computations s's password checks made.
func Argon2Runs(s *Service) uint64 { return s.argon2Runs.Load() }
