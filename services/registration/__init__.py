"""Registration: accepts enrolments, validates them, stores workers, and emits
WorkerEnrolled or EnrolmentRejected."""
