// Command gensample writes crm/testdata/sample_users.csv, the demo CRM
// export: 1,200 users, 1,195 good and 5 deliberately bad. Run it from the
// module root:
//
//	go run ./crm/internal/gensample > crm/testdata/sample_users.csv
//
// The output is deterministic (fixed seed): rerunning it must not change the
// file, so a diff shows a real change to the generator.
//
// Header: id,email,full_name,phone,npwp,plan,city,signup_source. Data row k
// (1-based) has id usr_%06d of k and sits on physical line k+1; no field
// spans lines. The bad rows, which the CSV source must reject as
// *sync.RecordError while going on with the rest:
//
//	line  138  usr_000137  invalid email "budi.santoso.gmail.com" (no @)
//	line  403  usr_000402  invalid email "dewi lestari@yahoo.co.id" (space)
//	line  656  (usr_000655) id column empty
//	line  872  (usr_000871) id column only spaces
//	line 1099  usr_001098  full_name of 300 characters (limit 255)
//
// The rest are plausible users: Indonesian names (Javanese, Sundanese,
// Batak, Balinese, Chinese-Indonesian, Arabic-derived), Vietnamese and
// European names with non-ASCII letters, emails derived from the names, about 25%
// without a phone, Indonesian phone numbers in mixed formats, an NPWP on
// about 20%, a plan, a city and a signup source.
package main

import (
	"bufio"
	"encoding/csv"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
)

const (
	users = 1200
	seed1 = 20261121
	seed2 = 62
)

// Bad rows by 1-based data row; see the package comment.
var (
	badEmail = map[int]struct{ email, name string }{
		137: {"budi.santoso.gmail.com", "Budi Santoso"},
		402: {"dewi lestari@yahoo.co.id", "Dewi Lestari"},
	}
	badID   = map[int]string{655: "", 871: "   "}
	longRow = 1098
)

type group struct {
	name   string
	weight int
	first  []string
	last   []string
	cities []string // preferred cities, on top of the general list
	make   func(r *rand.Rand, g *group) string
}

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

func twoPart(r *rand.Rand, g *group) string {
	if r.IntN(100) < 8 {
		return pick(r, g.first) // a single name, common in Java
	}
	return pick(r, g.first) + " " + pick(r, g.last)
}

var groups = []*group{
	{name: "javanese", weight: 26,
		first:  []string{"Budi", "Sri", "Agus", "Joko", "Wahyu", "Dwi", "Endang", "Sugeng", "Slamet", "Rahayu", "Wulan", "Bambang", "Hadi", "Tri", "Eko", "Kartika", "Setyo", "Lestari", "Ayu", "Dewi", "Retno", "Sekar", "Bagus", "Anjar", "Sukarmi", "Purwanti", "Yulianto", "Ratna"},
		last:   []string{"Santoso", "Wibowo", "Susanto", "Prasetyo", "Hartono", "Setiawan", "Nugroho", "Kusumawati", "Wijayanti", "Handayani", "Suryadi", "Purnamasari", "Sulistyowati", "Hidayat", "Saputra", "Utomo", "Wicaksono"},
		cities: []string{"Semarang", "Yogyakarta", "Surabaya", "Malang", "Solo"},
		make:   twoPart},
	{name: "sundanese", weight: 12,
		first:  []string{"Asep", "Ujang", "Dadang", "Cecep", "Euis", "Neng", "Iis", "Yayan", "Entin", "Dede", "Wawan", "Acep", "Rina", "Lilis", "Cucu", "Tatang"},
		last:   []string{"Sutisna", "Permana", "Supriatna", "Kurniawan", "Sudrajat", "Suganda", "Gunawan", "Rukmana", "Wiradinata", "Hermawan", "Sumantri"},
		cities: []string{"Bandung", "Bogor", "Cirebon", "Tasikmalaya"},
		make:   twoPart},
	{name: "batak", weight: 10,
		first:  []string{"Tigor", "Maruli", "Horas", "Lamhot", "Togar", "Sahat", "Rotua", "Nurhayati", "Intan", "Lasma", "Juliana", "Mangara", "Ruth", "Daniel", "Riris"},
		last:   []string{"Simanjuntak", "Siregar", "Nasution", "Hutapea", "Sitompul", "Panjaitan", "Manurung", "Simatupang", "Harahap", "Lubis", "Sinaga", "Situmorang", "Pardede", "Tampubolon", "Sihombing"},
		cities: []string{"Medan", "Pematangsiantar", "Jakarta"},
		make: func(r *rand.Rand, g *group) string {
			return pick(r, g.first) + " " + pick(r, g.last)
		}},
	{name: "balinese", weight: 8,
		first:  []string{"Wayan", "Made", "Nyoman", "Ketut", "Putu", "Kadek", "Komang", "Gede"},
		last:   []string{"Sudarsana", "Artawan", "Wirawan", "Suastika", "Ariani", "Sukerti", "Widiasih", "Mahendra", "Astawa", "Suarjana", "Budiarta", "Dharmawan", "Sri Wahyuni", "Yuliantari"},
		cities: []string{"Denpasar", "Denpasar", "Gianyar", "Singaraja"},
		make: func(r *rand.Rand, g *group) string {
			prefix := "I"
			if r.IntN(2) == 0 {
				prefix = "Ni"
			}
			return prefix + " " + pick(r, g.first) + " " + pick(r, g.last)
		}},
	{name: "chinese-indonesian", weight: 14,
		first:  []string{"Hendra", "Liliana", "Yohanes", "Stefani", "Kevin", "Jessica", "William", "Felicia", "Vincent", "Michelle", "Sutanto", "Jonathan", "Cindy", "Ferry", "Aling", "Budiman"},
		last:   []string{"Tanoto", "Wijaya", "Halim", "Salim", "Gunadi", "Tanuwidjaja", "Lim", "Tan", "Gozali", "Kurniadi", "Hartanto", "Sugianto", "Liem", "Oei", "Thio", "Kwee"},
		cities: []string{"Jakarta", "Surabaya", "Medan", "Pontianak", "Singkawang"},
		make:   twoPart},
	{name: "arabic-derived", weight: 18,
		first:  []string{"Muhammad", "Ahmad", "Abdullah", "Fatimah", "Aisyah", "Nur", "Siti", "Rizki", "Fauzan", "Hasan", "Husein", "Zainab", "Khadijah", "Ridwan", "Faisal", "Syarifah", "Umar", "Zulkifli", "Hafidz"},
		last:   []string{"Hakim", "Rahman", "Alatas", "Assegaf", "Alaydrus", "Shihab", "Al-Habsyi", "Nurhaliza", "Hidayatullah", "Syahputra", "Maulana", "Ramadhan", "Fadillah", "Azhari"},
		cities: []string{"Jakarta", "Makassar", "Palembang", "Padang", "Banda Aceh"},
		make: func(r *rand.Rand, g *group) string {
			if r.IntN(100) < 25 {
				return pick(r, g.first) + " " + pick(r, g.first) + " " + pick(r, g.last)
			}
			return pick(r, g.first) + " " + pick(r, g.last)
		}},
	{name: "vietnamese", weight: 4,
		first:  []string{"Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Đặng", "Vũ", "Bùi", "Đỗ", "Ngô"},
		last:   []string{"An", "Hương", "Mai", "Tuấn", "Linh", "Dũng", "Thảo", "Quang", "Hạnh", "Phúc", "Ngọc Ánh", "Đức Anh"},
		cities: []string{"Hanoi", "Ho Chi Minh City", "Jakarta", "Singapore"},
		make: func(r *rand.Rand, g *group) string {
			middle := "Văn"
			if r.IntN(2) == 0 {
				middle = "Thị"
			}
			return pick(r, g.first) + " " + middle + " " + pick(r, g.last)
		}},
	{name: "international", weight: 8,
		first:  []string{"Zoë", "José", "François", "Søren", "Björn", "Anaïs", "Łukasz", "Małgorzata", "Jürgen", "Chloé", "Íñigo", "Þórunn", "Antonín", "Renée", "Mário", "Noémie", "Håkon", "Siobhán", "Çağlar", "Şebnem", "Yūki", "Ana"},
		last:   []string{"Ångström", "Martínez", "Lefèvre", "Nielsen", "Åkesson", "Moreau", "Wiśniewski", "Kowalczyk", "Müller", "Dubois", "Öztürk", "Yılmaz", "Muñoz", "Guðmundsdóttir", "Dvořák", "O'Connor", "Conceição", "Lévesque", "Ødegård", "Ó Briain", "Satō", "Schröder"},
		cities: []string{"Singapore", "Kuala Lumpur", "Paris", "Berlin", "Amsterdam", "Stockholm", "Warsaw", "Istanbul", "Madrid", "Tokyo", "Sydney", "Reykjavík", "Jakarta", "Denpasar"},
		make: func(r *rand.Rand, g *group) string {
			return pick(r, g.first) + " " + pick(r, g.last)
		}},
}

var (
	cities         = []string{"Jakarta", "Jakarta", "Jakarta", "Jakarta", "Surabaya", "Surabaya", "Bandung", "Bandung", "Medan", "Denpasar", "Semarang", "Yogyakarta", "Makassar", "Palembang", "Malang", "Bogor", "Depok", "Tangerang", "Bekasi", "Balikpapan", "Pontianak", "Manado", "Padang", "Pekanbaru", "Batam"}
	sources        = []string{"organic", "organic", "organic", "google_ads", "google_ads", "referral", "referral", "instagram", "tiktok", "partner", "webinar", "facebook"}
	freeMail       = []string{"gmail.com", "gmail.com", "gmail.com", "gmail.com", "gmail.com", "yahoo.co.id", "yahoo.co.id", "yahoo.com", "hotmail.com", "outlook.com", "icloud.com", "ymail.com"}
	companyDomains = []string{"majubersama.co.id", "nusantaratech.id", "sinarjaya.co.id", "karyaindah.com", "tokobaju.id", "warungdigital.co.id", "kopikenangan-mitra.id", "cahayalogistik.com", "garudasoft.co.id", "batikwarna.com"}
	intlDomains    = []string{"gmail.com", "gmail.com", "outlook.com", "web.de", "gmx.de", "orange.fr", "yahoo.com", "proton.me", "icloud.com", "free.fr"}
	vnDomains      = []string{"gmail.com", "gmail.com", "gmail.com", "yahoo.com", "fpt.vn", "outlook.com", "vnpt.vn"}
	mobilePrefixes = []string{"811", "812", "813", "821", "822", "823", "852", "853", "855", "856", "857", "858", "877", "878", "881", "882", "895", "896", "897", "898"}
	abroadPhones   = map[string]string{"Singapore": "+65 9%03d %04d", "Kuala Lumpur": "+60 12-%03d %04d", "Sydney": "+61 4%02d %03d %03d", "Tokyo": "+81 90-%04d-%04d"}
)

// fold turns a name's letters into ASCII for an email local part.
var fold = strings.NewReplacer(
	"Å", "a", "å", "a", "ä", "a", "à", "a", "á", "a", "â", "a", "ã", "a", "ā", "a", "ạ", "a", "ả", "a", "ấ", "a", "ầ", "a", "ậ", "a", "ă", "a",
	"Đ", "d", "đ", "d", "ð", "d", "Ç", "c", "ç", "c", "č", "c",
	"è", "e", "é", "e", "ê", "e", "ë", "e", "ē", "e", "ế", "e", "ề", "e", "ệ", "e",
	"ì", "i", "í", "i", "î", "i", "ï", "i", "ı", "i", "ị", "i", "Í", "i",
	"ñ", "n", "ń", "n", "ò", "o", "ó", "o", "ô", "o", "õ", "o", "ö", "o", "ø", "o", "ō", "o", "ơ", "o", "ọ", "o", "Ø", "o", "Ó", "o",
	"ù", "u", "ú", "u", "û", "u", "ü", "u", "ū", "u", "ư", "u", "ụ", "u",
	"ł", "l", "Ł", "l", "ś", "s", "ş", "s", "Ş", "s", "š", "s", "ğ", "g", "ř", "r", "ž", "z", "ý", "y",
	"Þ", "th", "þ", "th", "ß", "ss", "æ", "ae",
	"ễ", "e", "ữ", "u", "ở", "o", "ồ", "o", "ố", "o", "ặ", "a", "ắ", "a", "ằ", "a", "ẩ", "a", "ẫ", "a",
	"ể", "e", "ỉ", "i", "ĩ", "i", "ỏ", "o", "ổ", "o", "ỗ", "o", "ộ", "o", "ớ", "o", "ờ", "o", "ợ", "o",
	"ủ", "u", "ũ", "u", "ứ", "u", "ừ", "u", "ử", "u", "ự", "u", "ỳ", "y", "ỹ", "y",
)

func localParts(name string) []string {
	var parts []string
	for _, p := range strings.Fields(fold.Replace(strings.ToLower(name))) {
		var b strings.Builder
		for _, c := range p {
			if c >= 'a' && c <= 'z' {
				b.WriteRune(c)
			}
		}
		if b.Len() > 0 {
			parts = append(parts, b.String())
		}
	}
	return parts
}

func email(r *rand.Rand, name, groupName string, seen map[string]bool) string {
	parts := localParts(name)
	// Balinese "I"/"Ni" and birth-order names make poor local parts.
	if groupName == "balinese" && len(parts) > 2 {
		parts = parts[1:]
	}
	first, last := parts[0], parts[len(parts)-1]
	var local string
	switch n := r.IntN(10); {
	case len(parts) == 1 || n < 2:
		local = first + fmt.Sprint(r.IntN(90)+10)
	case n < 5:
		local = first + "." + last
	case n < 7:
		local = first + last
	case n < 8:
		local = first[:1] + "." + last
	case n < 9:
		local = first + "_" + last
	default:
		local = first + "." + last + fmt.Sprint(r.IntN(30)+80)
	}
	var domain string
	switch {
	case groupName == "international":
		domain = pick(r, intlDomains)
	case groupName == "vietnamese":
		domain = pick(r, vnDomains)
	case r.IntN(100) < 18:
		domain = pick(r, companyDomains)
	default:
		domain = pick(r, freeMail)
	}
	addr := local + "@" + domain
	for i := 2; seen[addr]; i++ {
		addr = fmt.Sprintf("%s%d@%s", local, i, domain)
	}
	seen[addr] = true
	if r.IntN(100) < 3 { // some people type it capitalized
		addr = strings.ToUpper(addr[:1]) + addr[1:]
	}
	return addr
}

func phone(r *rand.Rand, city string) string {
	if r.IntN(100) < 25 {
		return ""
	}
	if f, ok := abroadPhones[city]; ok {
		if strings.Count(f, "%") == 3 {
			return fmt.Sprintf(f, r.IntN(100), r.IntN(1000), r.IntN(1000))
		}
		return fmt.Sprintf(f, r.IntN(1000), r.IntN(10000))
	}
	p := pick(r, mobilePrefixes)
	a, b := r.IntN(10000), r.IntN(10000)
	switch r.IntN(6) {
	case 0:
		return fmt.Sprintf("+62 %s-%04d-%04d", p, a, b)
	case 1:
		return fmt.Sprintf("0%s-%04d-%04d", p, a, b)
	case 2:
		return fmt.Sprintf("0%s%04d%04d", p, a, b)
	case 3:
		return fmt.Sprintf("+62%s%04d%04d", p, a, b)
	case 4:
		return fmt.Sprintf("0%s %04d %04d", p, a, b)
	default:
		return fmt.Sprintf("(021) %04d-%04d", 5000+r.IntN(5000), b) // office landline
	}
}

func npwp(r *rand.Rand) string {
	if r.IntN(100) >= 20 {
		return ""
	}
	return fmt.Sprintf("%02d.%03d.%03d.%d-%03d.%03d", r.IntN(100), r.IntN(1000), r.IntN(1000), r.IntN(10), r.IntN(1000), r.IntN(1000))
}

func plan(r *rand.Rand) string {
	switch n := r.IntN(100); {
	case n < 60:
		return "free"
	case n < 90:
		return "pro"
	}
	return "business"
}

func pickGroup(r *rand.Rand) *group {
	total := 0
	for _, g := range groups {
		total += g.weight
	}
	n := r.IntN(total)
	for _, g := range groups {
		if n < g.weight {
			return g
		}
		n -= g.weight
	}
	return groups[0]
}

func main() {
	out := bufio.NewWriter(os.Stdout)
	if err := generate(out); err != nil {
		fmt.Fprintln(os.Stderr, "gensample:", err)
		os.Exit(1)
	}
	if err := out.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, "gensample:", err)
		os.Exit(1)
	}
}

// generate writes the whole sample file to out.
func generate(out io.Writer) error {
	r := rand.New(rand.NewPCG(seed1, seed2))
	w := csv.NewWriter(out)
	_ = w.Write([]string{"id", "email", "full_name", "phone", "npwp", "plan", "city", "signup_source"})
	seen := map[string]bool{}
	for k := 1; k <= users; k++ {
		g := pickGroup(r)
		name := g.make(r, g)
		city := pick(r, cities)
		if len(g.cities) > 0 && r.IntN(100) < 60 {
			city = pick(r, g.cities)
		}
		row := []string{
			fmt.Sprintf("usr_%06d", k),
			email(r, name, g.name, seen),
			name,
			phone(r, city),
			npwp(r),
			plan(r),
			city,
			pick(r, sources),
		}
		if e, ok := badEmail[k]; ok {
			row[1], row[2] = e.email, e.name
		}
		if id, ok := badID[k]; ok {
			row[0] = id
		}
		if k == longRow {
			row[2] = strings.Repeat("Raden Mas Ngabehi ", 17)[:300] // 300 ASCII characters
		}
		_ = w.Write(row)
	}
	w.Flush()
	return w.Error()
}
