package authserver

import (
	"bytes"
	"html/template"
	"net/http"
)

// pageData feeds the HTML pages.
type pageData struct {
	Req, CSRF, Action, Client, Error string
	Patients                         []patientChoice
	Search, SearchAction             string
	Scopes                           []string
	User, Patient                    string
	Message                          string
}

const pageHead = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Ember sign-in</title>
<style>body{font-family:sans-serif;max-width:32em;margin:3em auto}label{display:block;margin:.5em 0}.err{color:#9e2d2d}</style>
</head><body>`

var (
	loginTmpl = template.Must(template.New("login").Parse(pageHead + `<h1>Sign in</h1>
<p><b>{{.Client}}</b> asks to access your FHIR data.</p>
{{if .Error}}<p class="err">{{.Error}}</p>{{end}}
<form method="post" action="{{.Action}}">
<input type="hidden" name="req" value="{{.Req}}"><input type="hidden" name="csrf" value="{{.CSRF}}">
<label>Username <input name="username" autocomplete="username" required autofocus></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
<button type="submit">Sign in</button>
</form></body></html>`))

	pickerTmpl = template.Must(template.New("picker").Parse(pageHead + `<h1>Choose a patient</h1>
<form method="get" action="{{.SearchAction}}"><input type="hidden" name="req" value="{{.Req}}">
<label>Name <input name="name" value="{{.Search}}"></label><button type="submit">Search</button></form>
<form method="post" action="{{.Action}}">
<input type="hidden" name="req" value="{{.Req}}"><input type="hidden" name="csrf" value="{{.CSRF}}">
{{range $i, $p := .Patients}}<label><input type="radio" name="patient" value="{{$p.ID}}"{{if eq $i 0}} checked{{end}}> {{$p.Name}} ({{$p.ID}})</label>
{{else}}<p>No patients found.</p>{{end}}
<button type="submit">Select</button>
</form></body></html>`))

	consentTmpl = template.Must(template.New("consent").Parse(pageHead + `<h1>Allow access?</h1>
<p><b>{{.Client}}</b> asks, for {{.User}}{{if .Patient}} and patient {{.Patient}}{{end}}, for:</p>
<form method="post" action="{{.Action}}">
<input type="hidden" name="req" value="{{.Req}}"><input type="hidden" name="csrf" value="{{.CSRF}}">
{{range .Scopes}}<label><input type="checkbox" name="scope" value="{{.}}" checked> {{.}}</label>
{{end}}
<button type="submit" name="allow" value="1">Allow</button> <button type="submit" name="deny" value="1">Deny</button>
</form></body></html>`))

	errorTmpl = template.Must(template.New("error").Parse(pageHead + `<h1>Cannot continue</h1>
<p class="err">{{.Message}}</p></body></html>`))
)

// render writes an HTML page with headers that keep it out of frames and
// caches and run no script.
func (s *Server) render(w http.ResponseWriter, status int, t *template.Template, d pageData) {
	var b bytes.Buffer
	if err := t.Execute(&b, d); err != nil {
		s.log.Error("render page", "page", t.Name(), "err", err)
		status = http.StatusInternalServerError
		b.Reset()
		b.WriteString("internal error")
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

func (s *Server) errorPage(w http.ResponseWriter, status int, msg string) {
	s.render(w, status, errorTmpl, pageData{Message: msg})
}
