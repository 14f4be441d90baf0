"""In-app administration for organization admins: sites, factors, agent tokens, members."""
