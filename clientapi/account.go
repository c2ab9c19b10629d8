package clientapi

import "github.com/gorilla/mux"

// registerAccountRoutes adds registration, login, logout, token, device and account routes.
func (a *API) registerAccountRoutes(r *mux.Router) {}
