"""Development stand-ins and tools: the synthetic cohort, the SMS gateway and SMTP
stand-ins, the feeder and the stack runner. Not deployed."""
