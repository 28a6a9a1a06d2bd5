"""The steps' business logic, written against small interfaces for the store, gateway and publisher."""
