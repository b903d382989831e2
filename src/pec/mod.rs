//! Pure PEC domain logic.
