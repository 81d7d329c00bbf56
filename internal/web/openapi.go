package web

import (
	_ "embed"
	"net/http"

	"github.com/labstack/echo/v4"
)

// openapiJSON describes /api/v1; TestOpenAPIMatchesRoutes checks it against
// the routes the server really registers.
//
//go:embed openapi.json
var openapiJSON []byte

func serveOpenAPI(c echo.Context) error {
	return c.Blob(http.StatusOK, "application/json", openapiJSON)
}
