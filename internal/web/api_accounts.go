package web

import (
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/ikabud/panel/internal/auth"
)

// accountAPI is the JSON API's token routes (`panel token ...` uses them).
type accountAPI struct{ acc Accounts }

func (h *accountAPI) register(g *echo.Group) {
	g.GET("/tokens", h.list)
	g.POST("/tokens", h.create)
	g.DELETE("/tokens/:tid", h.revoke)
}

// TokenRequest is the body of POST /api/v1/tokens.
type TokenRequest struct {
	// User is whose token it is: "" for the caller; admins may name anyone.
	User string `json:"user,omitempty"`
	Name string `json:"name,omitempty"`
}

// NewToken is the answer to POST /api/v1/tokens: the token, shown once.
type NewToken struct {
	auth.TokenView
	Token string `json:"token"`
}

func (h *accountAPI) list(c echo.Context) error {
	toks, err := h.acc.Tokens(c.Request().Context(), principal(c), c.QueryParam("user"))
	if err != nil {
		return err
	}
	if toks == nil {
		toks = []auth.TokenView{}
	}
	return c.JSON(http.StatusOK, toks)
}

func (h *accountAPI) create(c echo.Context) error {
	var req TokenRequest
	if err := bind(c, &req); err != nil {
		return err
	}
	if req.Name == "" {
		req.Name = "token"
	}
	v, token, err := h.acc.CreateToken(c.Request().Context(), principal(c), req.User, req.Name)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, NewToken{TokenView: v, Token: token})
}

func (h *accountAPI) revoke(c echo.Context) error {
	id, err := strconv.ParseUint(c.Param("tid"), 10, 32)
	if err != nil {
		return echo.NewHTTPError(http.StatusNotFound, "no such token")
	}
	if err := h.acc.RevokeToken(c.Request().Context(), principal(c), uint(id)); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
