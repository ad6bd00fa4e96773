"""Google Drive helpers: the sign-in (auth), the API client (client), queries and exports (convert)."""
