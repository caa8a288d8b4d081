"""The holder side: the library and communication server a holder's system uses, and samples."""
