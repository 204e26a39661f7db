"""POP3: the sans-IO protocol (:mod:`.protocol`) and the session (:mod:`.session`)."""
