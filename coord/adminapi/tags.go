package adminapi

// TagsRequest replaces a node's tags (POST NodeTagsPath).
type TagsRequest struct {
	Tags []string `json:"tags"`
}

// NodeTagsPath is where a node's tags are set.
func NodeTagsPath(ref string) string { return NodePath(ref) + "/tags" }
